-- A page of one student's ledger ($1), newest first: entries before position $2 (NULL: from the
-- newest), at most $3 rows. Keyset on seq, served by coin_transactions_student_newest.
SELECT seq, transaction_id, type, reference_id, amount, balance_after, created_at
FROM coin_transactions
WHERE student_id = $1 AND seq < coalesce($2::bigint, 9223372036854775807)
ORDER BY seq DESC
LIMIT $3
