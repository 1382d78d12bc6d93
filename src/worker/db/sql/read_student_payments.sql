-- A page of one student's payments ($1), newest first, optionally of one status ($2), before
-- position $3 (NULL: from the newest), at most $4 rows. Served by payments_student_newest.
SELECT seq, payment_id, student_id, course_id, amount, currency, status, provider,
       provider_payment_id, payment_url, expires_at, created_at, updated_at
FROM payments
WHERE student_id = $1
  AND ($2::text IS NULL OR status = $2::text)
  AND seq < coalesce($3::bigint, 9223372036854775807)
ORDER BY seq DESC
LIMIT $4
