-- Remembers a batch's new decisions with the result event each one answered. A key another
-- transaction decided meanwhile is skipped; the caller compares the count and retries the
-- batch, which then repeats that decision (a unique violation is never fatal).
WITH kept AS (
    INSERT INTO coin_requests
        (student_id, type, reference_id, requested_amount, outcome, result_topic, result_value)
    SELECT student_id, ledger_type, reference_id, requested_amount, outcome, result_topic,
           result_value
    FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::text[],
                $7::bytea[])
        AS v (student_id, ledger_type, reference_id, requested_amount, outcome, result_topic,
              result_value)
    ON CONFLICT DO NOTHING
    RETURNING 1
)
SELECT count(*) FROM kept
