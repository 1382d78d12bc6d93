-- The results earlier webhook events ($1, CloudEvent ids) got, for events delivered again.
SELECT source_event_id, payment_id, result_topic, result_key, result_value
FROM payment_transitions
WHERE source_event_id = ANY($1::text[])
    AND status IN ('succeeded', 'failed', 'cancelled', 'expired')
