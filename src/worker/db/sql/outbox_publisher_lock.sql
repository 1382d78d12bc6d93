-- Makes this transaction the only publisher until it ends (false: another relay publishes now).
-- One publisher at a time keeps each student's results in the order they were decided.
SELECT pg_try_advisory_xact_lock($1)
