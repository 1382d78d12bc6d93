-- Parked messages, oldest first, at most $1.
SELECT seq, outbox_seq, topic, key, octet_length(value) AS value_bytes, error_class,
       error_message, queued_at, parked_at
FROM parked_messages
ORDER BY seq
LIMIT $1
