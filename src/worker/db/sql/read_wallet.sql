-- One student's wallet ($1), or no row when the student has none yet.
SELECT student_id, balance, lifetime_earned, lifetime_spent, updated_at
FROM coin_wallets
WHERE student_id = $1
