-- The reads the contract requires of a batch before its writes (`raw_end_to_end` with reads), in
-- ONE statement: its students' wallets, locked in one order (balances and lifetime earnings
-- decide every coin effect); the decisions already stored under its coin keys (a replay repeats
-- its result); its payments, locked (the state machine moves from the stored status). $1..$3:
-- the coin events' student, type and reference (a duplicate's are its original's); $4: the
-- payment ids of payments requested; $5: the provider payment ids of payment changes.
WITH wallets AS (
    SELECT student_id, balance
    FROM coin_wallets
    WHERE student_id = ANY($1::text[])
    ORDER BY student_id
    FOR UPDATE
),
known AS (
    SELECT r.student_id, r.outcome, r.result_value
    FROM coin_requests AS r
    JOIN unnest($1::text[], $2::text[], $3::text[]) AS k (student_id, type, reference_id)
        USING (student_id, type, reference_id)
),
requested AS (
    SELECT payment_id, status
    FROM payments
    WHERE payment_id = ANY($4::text[])
    ORDER BY payment_id
    FOR UPDATE
),
changed AS (
    SELECT payment_id, status
    FROM payments
    WHERE provider = 'mock' AND provider_payment_id = ANY($5::text[])
    ORDER BY payment_id
    FOR UPDATE
)
SELECT 'wallet' AS kind, student_id AS id, balance::text AS value, NULL::bytea AS result
FROM wallets
UNION ALL
SELECT 'known', student_id, outcome, result_value FROM known
UNION ALL
SELECT 'requested', payment_id, status, NULL FROM requested
UNION ALL
SELECT 'changed', payment_id, status, NULL FROM changed
