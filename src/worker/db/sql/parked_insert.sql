-- Parks messages that never were in the outbox (published from memory) and cannot be published:
-- $1..$4 the message, $5 and $6 why; in the order given.
INSERT INTO parked_messages
    (topic, key, value, headers, error_class, error_message, queued_at)
SELECT topic, key, value, headers, error_class, error_message, now()
FROM unnest($1::text[], $2::bytea[], $3::bytea[], $4::bytea[], $5::text[], $6::text[])
    WITH ORDINALITY AS m (topic, key, value, headers, error_class, error_message, position)
ORDER BY position
