-- Real payment gateways (CONTRACT section 5): provider calls leave the batch's transaction.
--
-- A payment is recorded the moment it is requested; its checkout session is opened afterwards,
-- outside any transaction that holds wallet or payment locks, and written back when the provider
-- has answered. Until then the payment is `initiated` without a provider payment id or URL.
ALTER TABLE payments
    ALTER COLUMN provider_payment_id DROP NOT NULL,
    ALTER COLUMN payment_url DROP NOT NULL,
    -- The provider's id of the money it captured (Stripe payment intent, Razorpay payment),
    -- learned from a success webhook: the provider's refund API names it.
    ADD COLUMN captured_id text;

-- A refund is recorded as pending before the provider is asked, and its outcome after.
ALTER TABLE payment_refunds
    DROP CONSTRAINT payment_refunds_outcome_check,
    ADD CONSTRAINT payment_refunds_outcome_check
        CHECK (outcome IN ('pending', 'applied', 'rejected')),
    ALTER COLUMN result_topic DROP NOT NULL,
    ALTER COLUMN result_key DROP NOT NULL,
    ALTER COLUMN result_value DROP NOT NULL,
    -- The `payment.refund.requested` event that asked for it (NULL for refunds decided before).
    ADD COLUMN source_event_id ref_id,
    ADD CONSTRAINT payment_refunds_result_once_decided
        CHECK ((outcome = 'pending') = (result_value IS NULL));

-- At most one refund per payment in flight or applied (refunds are full refunds).
DROP INDEX payment_refunds_once_per_payment;
CREATE UNIQUE INDEX payment_refunds_once_per_payment
    ON payment_refunds (payment_id) WHERE outcome IN ('pending', 'applied');

-- The provider calls still to make: open a payment's session, or make a refund. A row leaves the
-- table in the transaction that records the call's outcome. A worker making a call holds a
-- session-level advisory lock on it (not a transaction), so a crash frees it at once and two
-- workers never make the same call together; the idempotency key makes a repeat harmless.
CREATE TABLE gateway_calls (
    kind            text NOT NULL CHECK (kind IN ('session', 'refund')),
    -- The payment id of a session, the refund id of a refund: the idempotency key's source.
    reference_id    ref_id NOT NULL,
    payment_id      ref_id NOT NULL REFERENCES payments (payment_id),
    attempts        integer NOT NULL DEFAULT 0,
    -- Not tried again before this time (backoff after a transient failure).
    not_before      timestamptz NOT NULL DEFAULT now(),
    first_tried_at  timestamptz,
    last_error      text,
    -- Requests replayed while the call was pending: each gets the call's answer too, when it
    -- comes (CONTRACT section 3: a replay is answered with the first request's result).
    answers_owed    integer NOT NULL DEFAULT 0,
    -- The session deadline asked of the provider at the first attempt: every repeat asks the
    -- same, as a provider's idempotency key must come with the same parameters.
    asked_expires_at timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, reference_id)
);

CREATE INDEX gateway_calls_due ON gateway_calls (not_before);

-- Providers report expiries now (Stripe `checkout.session.expired`, Razorpay
-- `payment_link.expired`): a redelivered one repeats its first answer like the other statuses.
DROP INDEX payment_transitions_by_event;
CREATE INDEX payment_transitions_by_event ON payment_transitions (source_event_id)
    WHERE status IN ('succeeded', 'failed', 'cancelled', 'expired');
