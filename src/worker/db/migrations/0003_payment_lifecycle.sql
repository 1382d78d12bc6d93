-- Every status each payment has reached, with the result event that announced it. A payment
-- reaches each status at most once (the state machine has no cycles), so the key is
-- (payment_id, status): a repeated notification of a status repeats the stored result byte for
-- byte, and a second expiry or confirmation of one payment cannot be written.
CREATE TABLE payment_transitions (
    payment_id      ref_id NOT NULL REFERENCES payments (payment_id),
    status          text NOT NULL CHECK (
                        status IN ('initiated', 'succeeded', 'failed', 'cancelled',
                                   'expired', 'refunded')
                    ),
    from_status     text CHECK (
                        from_status IN ('initiated', 'succeeded', 'failed', 'cancelled',
                                        'expired')
                    ),
    result_topic    text NOT NULL,
    result_key      bytea NOT NULL,
    result_value    bytea NOT NULL,
    -- The event that caused the move; NULL when the worker's expiry sweep did.
    source_event_id ref_id,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (payment_id, status),
    CONSTRAINT payment_transitions_first_is_initiated
        CHECK ((from_status IS NULL) = (status = 'initiated'))
);

-- Every refund request the worker has decided, applied or refused: a replay of the same
-- refund_id repeats the stored result, and a refusal stays a refusal (CONTRACT section 3).
CREATE TABLE payment_refunds (
    refund_id       ref_id PRIMARY KEY,
    -- Not a foreign key: a refund for an unknown payment is refused and remembered too.
    payment_id      ref_id NOT NULL,
    outcome         text NOT NULL CHECK (outcome IN ('applied', 'rejected')),
    actor_id        ref_id NOT NULL,
    reason          text NOT NULL,
    result_topic    text NOT NULL,
    result_key      bytea NOT NULL,
    result_value    bytea NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);

-- At most one applied refund per payment (refunds are full refunds).
CREATE UNIQUE INDEX payment_refunds_once_per_payment
    ON payment_refunds (payment_id) WHERE outcome = 'applied';
