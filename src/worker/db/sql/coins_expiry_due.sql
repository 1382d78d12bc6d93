-- Locks the wallets of up to $2 students with a lot whose deadline ($1 is now) has passed, the
-- candidates drawn from the 4 x $2 earliest such lots credited from the input partition
-- numbers $4 (lots from before 0014, which have none, go with partition 0), but for the
-- students in $3 (wallets this worker could not expire). SKIP LOCKED before the LIMIT: a
-- wallet another sweep or a batch holds is passed over, and the next candidate taken, so
-- sweeps never wait. Only wallets are locked: a wallet's lots are written only by the holder
-- of its lock (this sweep, or a batch), so sweeps and batches never deadlock.
SELECT student_id, balance, lifetime_earned, lifetime_spent, lotted
FROM coin_wallets
WHERE student_id IN (
    SELECT student_id
    FROM coin_lots
    WHERE coalesce(input_partition, 0) = ANY($4::int[]) AND remaining > 0 AND expires_at <= $1
        AND NOT (student_id = ANY($3::text[]))
    ORDER BY expires_at
    LIMIT 4 * $2
)
ORDER BY student_id
LIMIT $2
FOR UPDATE SKIP LOCKED
