-- Writes the outcome of pending refunds, with the result each one answered.
UPDATE payment_refunds AS r
SET outcome = v.outcome, result_topic = v.result_topic, result_key = v.result_key,
    result_value = v.result_value
FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[], $5::bytea[])
    AS v (refund_id, outcome, result_topic, result_key, result_value)
WHERE r.refund_id = v.refund_id AND r.outcome = 'pending'
RETURNING r.refund_id
