-- Locks up to $2 open payments whose deadline ($1 is now) has passed, oldest deadline first,
-- but for those in $3 (payments this worker could not expire).
-- SKIP LOCKED: a payment another worker's sweep or batch holds is left to that worker.
SELECT payment_id, student_id, course_id, amount, currency, description, provider,
       provider_payment_id, payment_url, expires_at, status, status_reason, source_event_id,
       captured_id
FROM payments
WHERE status = 'initiated' AND expires_at <= $1 AND NOT (payment_id = ANY($3::text[]))
ORDER BY expires_at
LIMIT $2
FOR UPDATE SKIP LOCKED
