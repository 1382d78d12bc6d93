-- The result each of the given payments ($1) announced for each status it reached.
SELECT payment_id, status, result_topic, result_key, result_value
FROM payment_transitions
WHERE payment_id = ANY($1::text[])
