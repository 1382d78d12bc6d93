-- Counts an attempt at the call ($1 kind, $2 reference id, $3 now) if it is due, and returns
-- what making it needs: the payment, the refund's reason, the attempt's number (the fence its
-- answer is written under) and the session deadline asked before. No row: the call was settled
-- or put off meanwhile (by another worker), and there is nothing to do now.
UPDATE gateway_calls AS c
SET attempts = c.attempts + 1,
    first_tried_at = coalesce(c.first_tried_at, $3)
FROM payments AS p
LEFT JOIN payment_refunds AS r ON r.refund_id = $2 AND $1 = 'refund'
WHERE c.kind = $1 AND c.reference_id = $2 AND c.not_before <= $3
    AND p.payment_id = c.payment_id
RETURNING c.attempts AS attempt, c.asked_expires_at, r.reason AS refund_reason,
          p.payment_id, p.student_id, p.course_id, p.amount, p.currency, p.description,
          p.provider, p.provider_payment_id, p.payment_url, p.expires_at, p.status,
          p.status_reason, p.source_event_id, p.captured_id
