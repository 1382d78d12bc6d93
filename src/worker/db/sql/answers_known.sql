-- Answers earlier batches gave the events of this one ($1: answer ids, UUIDv5 of the events'
-- type, source and id).
SELECT answer_id, result_topic, result_key, result_value
FROM event_answers
WHERE answer_id = ANY($1::uuid[])
