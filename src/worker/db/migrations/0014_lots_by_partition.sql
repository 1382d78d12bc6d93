-- A lot keeps the number of the input partition its credit was consumed from. One student's
-- coin events share a partition number on every coin input topic, so the member (and lane)
-- that owns that number decides all of the student's coin results. It is the one that expires
-- the lot, between two of its batches, once its results before are published: so a
-- `coins.expired` takes its place in the student's order of results (CONTRACT section 4).
--
-- Lots made before this migration have none: they go with partition 0, and a debit that draws
-- on a lot records its own partition on it (coins_write). Nullable, no default, and the check
-- NOT VALID: adding the column neither rewrites nor scans the table.
ALTER TABLE coin_lots ADD COLUMN input_partition integer;
ALTER TABLE coin_lots ADD CONSTRAINT coin_lots_input_partition_check
    CHECK (input_partition >= 0) NOT VALID;

-- A lane's sweep reads the open lots of its partitions only, earliest deadline first. Building
-- the index reads coin_lots and holds its writes meanwhile, as every index of earlier
-- migrations did.
DROP INDEX coin_lots_open_by_deadline;
CREATE INDEX coin_lots_open_by_partition
    ON coin_lots ((coalesce(input_partition, 0)), expires_at) WHERE remaining > 0;
