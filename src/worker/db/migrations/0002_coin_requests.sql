-- Every coin request the worker has decided, applied or refused. A replay of the same
-- (student_id, type, reference_id) repeats the stored result event byte for byte, and a refusal
-- stays a refusal even if the balance grows later (CONTRACT section 3).
CREATE TABLE coin_requests (
    student_id       ref_id NOT NULL,
    type             text NOT NULL CHECK (
                         type IN ('course_completion', 'referral', 'manual_adjustment',
                                  'redemption')
                     ),
    reference_id     ref_id NOT NULL,
    -- The amount the event stated, or NULL when it came from configuration: what replays are
    -- compared on to tell a duplicate from an idempotency conflict.
    requested_amount json_safe_int,
    outcome          text NOT NULL CHECK (outcome IN ('applied', 'rejected')),
    result_topic     text NOT NULL,
    result_value     bytea NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (student_id, type, reference_id)
);
