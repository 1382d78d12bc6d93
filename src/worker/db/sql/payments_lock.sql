-- Locks the payments a batch names, by payment id ($1) or by provider and provider payment id
-- ($2, $3), in payment_id order so that two batches never deadlock.
SELECT payment_id, student_id, course_id, amount, currency, description, provider,
       provider_payment_id, payment_url, expires_at, status, status_reason, source_event_id,
       captured_id
FROM payments
WHERE payment_id IN (
    SELECT unnest($1::text[])
    UNION
    SELECT p.payment_id
    FROM payments AS p
    JOIN unnest($2::text[], $3::text[]) AS k (provider, provider_payment_id)
        USING (provider, provider_payment_id)
)
ORDER BY payment_id
FOR UPDATE
