-- Takes the oldest queued messages that no other relay is publishing right now.
SELECT seq, topic, key, value, headers
FROM outbox
ORDER BY seq
LIMIT $1
FOR UPDATE SKIP LOCKED
