-- Queues the provider calls a batch's decisions ask for ($1 kinds, $2 reference ids, $3 payment
-- ids), due at once ($4, the batch's time). A call already queued stays as it is.
INSERT INTO gateway_calls (kind, reference_id, payment_id, not_before)
SELECT kind, reference_id, payment_id, $4
FROM unnest($1::text[], $2::text[], $3::text[]) AS c (kind, reference_id, payment_id)
ON CONFLICT DO NOTHING
