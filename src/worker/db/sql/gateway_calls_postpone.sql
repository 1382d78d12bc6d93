-- Puts a call ($1 kind, $2 reference id) off until $3, saying why ($4).
UPDATE gateway_calls
SET not_before = $3, last_error = $4
WHERE kind = $1 AND reference_id = $2
