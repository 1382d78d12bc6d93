-- Writes the statuses a batch ends with (the payments are locked by payments_lock).
UPDATE payments AS p
SET status = v.status,
    status_reason = v.status_reason,
    updated_at = now()
FROM unnest($1::text[], $2::text[], $3::text[]) AS v (payment_id, status, status_reason)
WHERE p.payment_id = v.payment_id
