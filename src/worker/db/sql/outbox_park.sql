-- Moves messages that cannot be published ($1 seqs, $2 error classes, $3 error messages) from
-- the outbox to parked_messages, in outbox order.
WITH moved AS (
    DELETE FROM outbox WHERE seq = ANY($1::bigint[])
    RETURNING seq, topic, key, value, headers, created_at
)
INSERT INTO parked_messages
    (outbox_seq, topic, key, value, headers, error_class, error_message, queued_at)
SELECT m.seq, m.topic, m.key, m.value, m.headers, e.error_class, e.error_message, m.created_at
FROM moved AS m
JOIN unnest($1::bigint[], $2::text[], $3::text[]) AS e (seq, error_class, error_message)
    USING (seq)
ORDER BY m.seq
