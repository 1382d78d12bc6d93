-- Removes a call ($1 kind, $2 reference id) whose outcome is written, if the attempt that got
-- that outcome ($3) is still the latest; returns how many replays wait for its answer. None: a
-- later attempt (another worker's) owns the call, and this outcome must not be written.
DELETE FROM gateway_calls
WHERE kind = $1 AND reference_id = $2 AND attempts = $3
RETURNING answers_owed
