-- Takes the oldest queued messages, in the order they were queued (the caller holds the
-- publisher lock, so no other relay is publishing).
SELECT seq, topic, key, value, headers, created_at
FROM outbox
ORDER BY seq
LIMIT $1
FOR UPDATE
