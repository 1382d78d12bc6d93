-- Locks the wallets of the students of up to $2 lots whose deadline ($1 is now) has passed,
-- earliest deadline first, but for the students in $3 (wallets this worker could not expire).
-- SKIP LOCKED on the lots, then on the wallets: several workers sweeping at once take
-- different lots and never wait on each other, and a wallet a batch holds is left to the next
-- sweep. (A batch that writes a lot this sweep holds waits for it; the sweep never waits, so
-- the two cannot deadlock.)
WITH due AS (
    SELECT student_id
    FROM coin_lots
    WHERE remaining > 0 AND expires_at <= $1 AND NOT (student_id = ANY($3::text[]))
    ORDER BY expires_at
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)
SELECT student_id, balance, lifetime_earned, lifetime_spent, lotted
FROM coin_wallets
WHERE student_id IN (SELECT student_id FROM due)
ORDER BY student_id
FOR UPDATE SKIP LOCKED
