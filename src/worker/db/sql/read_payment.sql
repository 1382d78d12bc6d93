-- One payment by id ($1).
SELECT seq, payment_id, student_id, course_id, amount, currency, status, provider,
       provider_payment_id, payment_url, expires_at, created_at, updated_at
FROM payments
WHERE payment_id = $1
