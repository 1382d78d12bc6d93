-- How many messages wait to be published, and how many are parked.
SELECT (SELECT count(*) FROM outbox) AS queued, (SELECT count(*) FROM parked_messages) AS parked
