-- How many messages wait to be published, how many are parked, and the age in seconds of the
-- oldest that waits (0 when none does).
SELECT (SELECT count(*) FROM outbox) AS queued, (SELECT count(*) FROM parked_messages) AS parked,
       (SELECT coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8 FROM outbox)
           AS oldest_seconds
