-- Keeps the session deadline asked of the provider ($3) for the call ($1 kind, $2 reference
-- id), the first time; returns the one every attempt asks.
UPDATE gateway_calls
SET asked_expires_at = coalesce(asked_expires_at, $3)
WHERE kind = $1 AND reference_id = $2
RETURNING asked_expires_at
