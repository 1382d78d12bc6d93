-- The ledger, payments and the outbox: the tables every flow of the worker stands on.
-- Amounts are bigint but held to the JSON-safe integer range (|n| <= 2^53 - 1), as the CONTRACT
-- promises every amount fits in a JSON number.

CREATE DOMAIN json_safe_int AS bigint
    CHECK (VALUE BETWEEN -9007199254740991 AND 9007199254740991);

-- Ids are strings of 1..128 characters everywhere.
CREATE DOMAIN ref_id AS text
    CHECK (char_length(VALUE) BETWEEN 1 AND 128);

CREATE TABLE coin_wallets (
    student_id      ref_id PRIMARY KEY,
    balance         json_safe_int NOT NULL DEFAULT 0 CHECK (balance >= 0),
    lifetime_earned json_safe_int NOT NULL DEFAULT 0 CHECK (lifetime_earned >= 0),
    lifetime_spent  json_safe_int NOT NULL DEFAULT 0 CHECK (lifetime_spent >= 0),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    -- Credits raise lifetime_earned, debits raise lifetime_spent; the balance is what is left.
    CONSTRAINT coin_wallets_balance_is_earned_minus_spent
        CHECK (balance = lifetime_earned - lifetime_spent)
);

CREATE TABLE coin_transactions (
    -- seq orders a student's entries (newest first in the read API) and keys its cursors.
    seq             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    transaction_id  uuid NOT NULL UNIQUE,
    student_id      ref_id NOT NULL REFERENCES coin_wallets (student_id),
    type            text NOT NULL CHECK (
                        type IN ('course_completion', 'referral', 'manual_adjustment', 'redemption')
                    ),
    reference_id    ref_id NOT NULL,
    amount          json_safe_int NOT NULL CHECK (amount <> 0),
    balance_after   json_safe_int NOT NULL CHECK (balance_after >= 0),
    source_event_id ref_id NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    -- The idempotency key of a ledger effect (CONTRACT section 3).
    CONSTRAINT coin_transactions_effect_once UNIQUE (student_id, type, reference_id)
);

CREATE INDEX coin_transactions_student_newest ON coin_transactions (student_id, seq DESC);

CREATE TABLE payments (
    seq                 bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    payment_id          ref_id PRIMARY KEY,
    student_id          ref_id NOT NULL,
    course_id           ref_id NOT NULL,
    amount              json_safe_int NOT NULL CHECK (amount > 0),
    currency            text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    description         text,
    status              text NOT NULL CHECK (
                            status IN ('initiated', 'succeeded', 'failed', 'cancelled',
                                       'expired', 'refunded')
                        ),
    status_reason       text,
    provider            text NOT NULL CHECK (provider IN ('mock', 'stripe', 'razorpay')),
    provider_payment_id ref_id NOT NULL,
    payment_url         text NOT NULL,
    expires_at          timestamptz NOT NULL,
    source_event_id     ref_id NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    -- A webhook finds its payment by provider and provider payment id (CONTRACT section 5).
    CONSTRAINT payments_provider_payment_once UNIQUE (provider, provider_payment_id)
);

CREATE INDEX payments_student_newest ON payments (student_id, seq DESC);
-- The expiry sweep reads only open payments, oldest deadline first.
CREATE INDEX payments_open_by_deadline ON payments (expires_at) WHERE status = 'initiated';

-- Messages to publish, written in the same transaction as the effect they report (transactional
-- outbox): result events, and bad input bound for the dead-letter topic byte for byte. A row
-- leaves the table once the broker has acknowledged it.
CREATE TABLE outbox (
    seq           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    topic         text NOT NULL,
    key           bytea,
    value         bytea,
    -- The Kafka headers in order, as [[name, base64 of the value], ...].
    headers       jsonb NOT NULL DEFAULT '[]',
    created_at    timestamptz NOT NULL DEFAULT now()
);
