-- Serialises migration runs across workers until the surrounding transaction ends.
SELECT pg_advisory_xact_lock($1)
