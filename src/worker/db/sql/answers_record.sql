-- Keeps a batch's answers by event. An answer another worker kept meanwhile is skipped; the
-- caller compares the count and retries the batch, which then repeats that answer.
WITH kept AS (
    INSERT INTO event_answers
        (answer_id, event_type, event_source, event_id, result_topic, result_key, result_value)
    SELECT answer_id, event_type, event_source, event_id, result_topic, result_key,
           result_value
    FROM unnest($1::event_answer_row[])
        AS v (answer_id, event_type, event_source, event_id, result_topic, result_key,
              result_value)
    ON CONFLICT DO NOTHING
    RETURNING 1
)
SELECT count(*) FROM kept
