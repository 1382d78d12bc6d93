-- The lots of the locked wallets $1 whose deadline ($2 is now) has passed and that have coins
-- left, credited from the input partition numbers $3 (as in coins_expiry_due), with the source
-- event of the credit each one came with.
SELECT l.transaction_id::text AS transaction_id, l.student_id, l.amount, l.remaining,
       l.expires_at, t.source_event_id
FROM coin_lots AS l
JOIN coin_transactions AS t ON t.transaction_id = l.transaction_id
WHERE l.student_id = ANY($1::text[]) AND l.remaining > 0 AND l.expires_at <= $2
    AND coalesce(l.input_partition, 0) = ANY($3::int[])
ORDER BY l.student_id, l.expires_at, l.transaction_id
