-- Answers earlier batches gave events with these ids ($1); the caller keeps those whose type and
-- source match too.
SELECT event_type, event_source, event_id, result_topic, result_key, result_value
FROM event_answers
WHERE event_id = ANY($1::text[])
