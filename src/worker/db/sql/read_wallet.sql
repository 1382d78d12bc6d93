-- One student's wallet ($1), or no row when the student has none yet, with what expires next:
-- the coins left in its open lots with the earliest deadline, and that deadline (NULLs when no
-- lot is open).
SELECT w.student_id, w.balance, w.lifetime_earned, w.lifetime_spent, w.updated_at,
       l.remaining AS expiring_amount, l.expires_at AS expiring_at
FROM coin_wallets AS w
LEFT JOIN LATERAL (
    SELECT sum(remaining)::bigint AS remaining, expires_at
    FROM coin_lots
    WHERE student_id = w.student_id AND remaining > 0
    GROUP BY expires_at
    ORDER BY expires_at
    LIMIT 1
) AS l ON true
WHERE w.student_id = $1
