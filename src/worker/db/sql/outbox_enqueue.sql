-- Queues a batch of messages for publishing, in the order given (seq follows array order).
INSERT INTO outbox (topic, key, value, headers)
SELECT topic, key, value, headers
FROM unnest($1::text[], $2::bytea[], $3::bytea[], $4::bytea[])
    WITH ORDINALITY AS m (topic, key, value, headers, position)
ORDER BY position
