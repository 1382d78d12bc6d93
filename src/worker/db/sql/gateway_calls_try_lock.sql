-- Takes the session-level advisory lock of a provider call ($1 "kind:reference_id") if no other
-- session holds it: held while the call is made, outside any transaction; a crash frees it.
SELECT pg_try_advisory_lock(1886680946, hashtext($1))
