-- Forgets messages the broker has acknowledged.
DELETE FROM outbox WHERE seq = ANY($1::bigint[])
