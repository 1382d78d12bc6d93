-- Removes a call ($1 kind, $2 reference id) whose outcome is written; returns how many replays
-- wait for its answer, if it was still there (none: another worker settled it first, and this
-- outcome must not be written).
DELETE FROM gateway_calls
WHERE kind = $1 AND reference_id = $2
RETURNING answers_owed
