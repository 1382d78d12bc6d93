-- Locks the wallets of up to $2 students with a lot whose deadline ($1 is now) has passed, the
-- candidates drawn from the 4 x $2 earliest such lots credited from the input partition
-- numbers $4 (lots from before 0014, which have none, go with partition 0), but for the
-- students in $3 (wallets this worker could not expire). Each partition's earliest are read
-- in deadline order from coin_lots_open_by_partition, so a backlog of due lots is not read
-- whole. SKIP LOCKED before the LIMIT: a wallet another sweep or a batch holds is passed
-- over, and the next candidate taken, so sweeps never wait. Only wallets are locked: a
-- wallet's lots are written only by the holder of its lock (this sweep, or a batch), so
-- sweeps and batches never deadlock.
SELECT student_id, balance, lifetime_earned, lifetime_spent, lotted
FROM coin_wallets
WHERE student_id IN (
    SELECT due.student_id
    FROM unnest($4::int[]) AS p (number)
    CROSS JOIN LATERAL (
        SELECT student_id, expires_at
        FROM coin_lots
        WHERE coalesce(input_partition, 0) = p.number AND remaining > 0 AND expires_at <= $1
            AND NOT (student_id = ANY($3::text[]))
        ORDER BY expires_at
        LIMIT 4 * $2
    ) AS due
    ORDER BY due.expires_at
    LIMIT 4 * $2
)
ORDER BY student_id
LIMIT $2
FOR UPDATE SKIP LOCKED
