-- Removes a call ($1 kind, $2 reference id) there is no reason to make any more; returns how
-- many replays waited for its answer.
DELETE FROM gateway_calls
WHERE kind = $1 AND reference_id = $2
RETURNING answers_owed
