-- Locks a batch's wallets until commit, in a fixed order so that two batches never deadlock.
SELECT student_id, balance, lifetime_earned, lifetime_spent, lotted
FROM coin_wallets
WHERE student_id = ANY($1::text[])
ORDER BY student_id
FOR UPDATE
