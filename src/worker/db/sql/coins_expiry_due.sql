-- Locks the wallets of up to $2 students with a lot whose deadline ($1 is now) has passed,
-- earliest deadline first, but for the students in $3 (wallets this worker could not expire).
-- SKIP LOCKED: a wallet another worker's sweep or batch holds is left to the next sweep, so
-- several workers sweep at once without waiting on each other or on batches.
SELECT student_id, balance, lifetime_earned, lifetime_spent, lotted
FROM coin_wallets
WHERE student_id IN (
    SELECT student_id
    FROM coin_lots
    WHERE remaining > 0 AND expires_at <= $1 AND NOT (student_id = ANY($3::text[]))
    ORDER BY expires_at
    LIMIT $2
)
ORDER BY student_id
FOR UPDATE SKIP LOCKED
