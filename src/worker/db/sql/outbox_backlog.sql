-- How many messages wait to be published.
SELECT count(*) FROM outbox
