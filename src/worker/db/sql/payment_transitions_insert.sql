-- Records the statuses a batch's payments reached, in the order they reached them.
INSERT INTO payment_transitions
    (payment_id, status, from_status, result_topic, result_key, result_value, source_event_id,
     provider_event_id)
SELECT payment_id, to_status, from_status, result_topic, result_key, result_value,
       source_event_id, provider_event_id
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bytea[], $6::bytea[],
            $7::text[], $8::text[])
    WITH ORDINALITY AS t (payment_id, to_status, from_status, result_topic, result_key,
                          result_value, source_event_id, provider_event_id, position)
ORDER BY position
