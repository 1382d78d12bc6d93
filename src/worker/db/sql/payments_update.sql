-- Writes the state a batch (or a provider's answer) leaves its payments in; they are locked by
-- payments_lock.
UPDATE payments AS p
SET status = v.status,
    status_reason = v.status_reason,
    provider_payment_id = v.provider_payment_id,
    payment_url = v.payment_url,
    expires_at = v.expires_at,
    captured_id = v.captured_id,
    updated_at = now()
FROM unnest($1::payment_update_row[])
    AS v (payment_id, status, status_reason, provider_payment_id, payment_url, expires_at,
          captured_id)
WHERE p.payment_id = v.payment_id
