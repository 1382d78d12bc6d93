-- Up to $2 provider calls due at $1, longest waiting first, but for those in $3 (this worker's
-- calls in flight, as "kind:reference_id").
SELECT kind, reference_id
FROM gateway_calls
WHERE not_before <= $1 AND NOT ((kind || ':' || reference_id) = ANY($3::text[]))
ORDER BY not_before
LIMIT $2
