-- One student's wallet ($1), or no row when the student has none yet, with the next of its
-- lots to expire (its remaining coins and deadline; NULLs when none is open).
SELECT w.student_id, w.balance, w.lifetime_earned, w.lifetime_spent, w.updated_at,
       l.remaining AS expiring_amount, l.expires_at AS expiring_at
FROM coin_wallets AS w
LEFT JOIN LATERAL (
    SELECT remaining, expires_at
    FROM coin_lots
    WHERE student_id = w.student_id AND remaining > 0
    ORDER BY expires_at, transaction_id
    LIMIT 1
) AS l ON true
WHERE w.student_id = $1
