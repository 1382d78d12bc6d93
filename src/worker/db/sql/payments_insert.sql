-- Opens a batch's new payments. A payment id (or provider payment id) another worker inserted
-- meanwhile is skipped; the caller compares the returned ids and retries the batch.
INSERT INTO payments
    (payment_id, student_id, course_id, amount, currency, description, status, status_reason,
     provider, provider_payment_id, payment_url, expires_at, source_event_id)
SELECT payment_id, student_id, course_id, amount, currency, description, status, status_reason,
       provider, provider_payment_id, payment_url, expires_at, source_event_id
FROM unnest($1::payment_row[])
    AS v (payment_id, student_id, course_id, amount, currency, description, status,
          status_reason, provider, provider_payment_id, payment_url, expires_at, source_event_id)
ON CONFLICT DO NOTHING
RETURNING payment_id
