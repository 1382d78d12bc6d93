-- Makes this transaction the only publisher until it ends ($1, the lock key) and takes the
-- oldest queued messages ($2 at most), in the order they were queued. One publisher at a time
-- keeps each student's results in the order they were decided. One row without a message when
-- the queue is empty, or when another relay publishes now (`publisher` false).
WITH lock AS (
    SELECT pg_try_advisory_xact_lock($1) AS publisher
)
SELECT lock.publisher, o.seq, o.topic, o.key, o.value, o.headers
FROM lock
LEFT JOIN LATERAL (
    SELECT seq, topic, key, value, headers
    FROM outbox
    WHERE lock.publisher
    ORDER BY seq
    LIMIT $2
    FOR UPDATE
) AS o ON true
