-- The consume loop publishes coin results and dead letters straight from memory, committing the
-- input offsets only once the broker has acknowledged them (CONTRACT section 3): those never
-- pass through the outbox. One the broker refuses for good is parked all the same, without an
-- outbox seq.
ALTER TABLE parked_messages ALTER COLUMN outbox_seq DROP NOT NULL;
