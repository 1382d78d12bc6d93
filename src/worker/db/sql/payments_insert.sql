-- Opens a batch's new payments. A payment id (or provider payment id) another worker inserted
-- meanwhile is skipped; the caller compares the returned ids and retries the batch.
INSERT INTO payments
    (payment_id, student_id, course_id, amount, currency, description, status, status_reason,
     provider, provider_payment_id, payment_url, expires_at, source_event_id)
SELECT payment_id, student_id, course_id, amount, currency, description, status, status_reason,
       provider, provider_payment_id, payment_url, expires_at, source_event_id
FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::text[],
            $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::timestamptz[],
            $13::text[])
    AS v (payment_id, student_id, course_id, amount, currency, description, status,
          status_reason, provider, provider_payment_id, payment_url, expires_at, source_event_id)
ON CONFLICT DO NOTHING
RETURNING payment_id
