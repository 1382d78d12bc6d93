-- Up to $2 provider calls due at $1, longest waiting first, with their payment's provider, but
-- for those in $3 (this worker's in flight, as "kind:reference_id") and those another worker is
-- making (it holds the call's advisory lock; see gateway_calls_try_lock).
SELECT c.kind, c.reference_id, p.provider
FROM gateway_calls AS c
JOIN payments AS p USING (payment_id)
WHERE c.not_before <= $1
    AND NOT ((c.kind || ':' || c.reference_id) = ANY($3::text[]))
    AND NOT EXISTS (
        SELECT 1 FROM pg_locks AS l
        WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
            AND l.classid = 1886680946
            AND l.objid = hashtext(c.kind || ':' || c.reference_id)::oid
    )
ORDER BY c.not_before
LIMIT $2
