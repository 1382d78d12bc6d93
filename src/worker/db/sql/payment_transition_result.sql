-- The result that announced the given payment's ($1) given status ($2).
SELECT result_topic, result_key, result_value
FROM payment_transitions
WHERE payment_id = $1 AND status = $2
