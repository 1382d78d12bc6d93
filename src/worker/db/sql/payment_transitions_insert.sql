-- Records the statuses a batch's payments reached, in the order they reached them.
INSERT INTO payment_transitions
    (payment_id, status, from_status, result_topic, result_key, result_value, source_event_id,
     provider_event_id)
SELECT payment_id, to_status, from_status, result_topic, result_key, result_value,
       source_event_id, provider_event_id
FROM unnest($1::payment_transition_row[])
    WITH ORDINALITY AS t (payment_id, to_status, from_status, result_topic, result_key,
                          result_value, source_event_id, provider_event_id, position)
ORDER BY position
