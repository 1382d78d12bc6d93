-- Row types for the arrays of rows the hottest statements take (coins_write, answers_record,
-- payments_insert, payments_update, payment_transitions_insert):
-- one array of rows instead of one array per column. The client checks each element of an
-- array parameter for being an array itself, a call of a few hundred nanoseconds: a row is
-- one element where its columns were eight. The fields are in the order of the columns each
-- statement's unnest names (a test compares them), with the types those arrays had.
CREATE TYPE coin_request_row AS (
    student_id text,
    ledger_type text,
    reference_id text,
    requested_amount bigint,
    outcome text,
    result_topic text,
    result_value bytea,
    item_id text
);

CREATE TYPE coin_wallet_row AS (
    student_id text,
    balance bigint,
    lifetime_earned bigint,
    lifetime_spent bigint,
    lotted bigint
);

CREATE TYPE coin_entry_row AS (
    transaction_id uuid,
    student_id text,
    ledger_type text,
    reference_id text,
    amount bigint,
    balance_after bigint,
    source_event_id text
);

CREATE TYPE event_answer_row AS (
    answer_id uuid,
    event_type text,
    event_source text,
    event_id text,
    result_topic text,
    result_key bytea,
    result_value bytea
);

CREATE TYPE coin_lot_row AS (
    transaction_id uuid,
    student_id text,
    amount bigint,
    remaining bigint,
    expires_at timestamptz,
    input_partition int
);

CREATE TYPE payment_row AS (
    payment_id text,
    student_id text,
    course_id text,
    amount bigint,
    currency text,
    description text,
    status text,
    status_reason text,
    provider text,
    provider_payment_id text,
    payment_url text,
    expires_at timestamptz,
    source_event_id text
);

CREATE TYPE payment_update_row AS (
    payment_id text,
    status text,
    status_reason text,
    provider_payment_id text,
    payment_url text,
    expires_at timestamptz,
    captured_id text
);

CREATE TYPE payment_transition_row AS (
    payment_id text,
    to_status text,
    from_status text,
    result_topic text,
    result_key bytea,
    result_value bytea,
    source_event_id text,
    provider_event_id text
);
