-- Moves parked messages ($1 seqs; NULL: all) back to the end of the outbox, in parked order,
-- for the relay to publish again. Returns the parked seqs moved.
WITH moved AS (
    DELETE FROM parked_messages
    WHERE $1::bigint[] IS NULL OR seq = ANY($1::bigint[])
    RETURNING seq, topic, key, value, headers
),
queued AS (
    INSERT INTO outbox (topic, key, value, headers)
    SELECT topic, key, value, headers FROM moved ORDER BY seq
)
SELECT seq FROM moved ORDER BY seq
