-- Releases the advisory lock gateway_calls_try_lock took for $1 ("kind:reference_id").
SELECT pg_advisory_unlock(1886680946, hashtext($1))
