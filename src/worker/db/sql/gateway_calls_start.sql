-- Counts an attempt at the call ($1 kind, $2 reference id, $3 now) and returns what making it
-- needs: the payment, the refund's reason, and how many attempts came before. No row: the call
-- was settled meanwhile (by another worker), and there is nothing to do.
UPDATE gateway_calls AS c
SET attempts = c.attempts + 1,
    first_tried_at = coalesce(c.first_tried_at, $3)
FROM payments AS p
LEFT JOIN payment_refunds AS r ON r.refund_id = $2 AND $1 = 'refund'
WHERE c.kind = $1 AND c.reference_id = $2 AND p.payment_id = c.payment_id
RETURNING c.attempts - 1 AS earlier_attempts, r.reason AS refund_reason,
          p.payment_id, p.student_id, p.course_id, p.amount, p.currency, p.description,
          p.provider, p.provider_payment_id, p.payment_url, p.expires_at, p.status,
          p.status_reason, p.source_event_id, p.captured_id
