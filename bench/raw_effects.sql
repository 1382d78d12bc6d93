-- The raw SQL limit: the rows the worker writes for up to 1,000 events, in ONE statement, with
-- nothing read first and no Kafka. Columns per event ($1..$11, one array each): ledger entry
-- (student, type, reference, signed amount or 0 for a refusal, balance after, transaction id),
-- payment change (payment id or provider payment id, new status), and the result (topic, key,
-- value). Columns that do not apply to an event are NULL. $12: whether every result is queued in
-- the outbox (the storage shape before results were published from memory) or only those of
-- payments (today's).
WITH e AS (
    SELECT *
    FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::uuid[],
                $7::text[], $8::text[], $9::text[], $10::bytea[], $11::bytea[])
        WITH ORDINALITY AS e (student_id, type, reference_id, amount, balance_after,
                              transaction_id, payment_id, status, topic, key, value, ord)
),
entries AS (
    INSERT INTO coin_transactions
        (transaction_id, student_id, type, reference_id, amount, balance_after, source_event_id)
    SELECT transaction_id, student_id, type, reference_id, amount, balance_after, 'raw'
    FROM e
    WHERE amount <> 0
    ORDER BY ord
),
decisions AS (
    INSERT INTO coin_requests
        (student_id, type, reference_id, requested_amount, outcome, result_topic, result_value)
    SELECT student_id, type, reference_id, amount,
           CASE WHEN amount <> 0 THEN 'applied' ELSE 'rejected' END, topic, value
    FROM e
    WHERE student_id IS NOT NULL
),
wallets AS (
    UPDATE coin_wallets AS w
    SET balance = v.balance_after,
        lifetime_earned = w.lifetime_earned + v.earned,
        lifetime_spent = w.lifetime_spent + v.spent,
        updated_at = now()
    FROM (
        SELECT DISTINCT ON (student_id) student_id, balance_after,
               sum(greatest(amount, 0)) OVER (PARTITION BY student_id) AS earned,
               sum(greatest(-amount, 0)) OVER (PARTITION BY student_id) AS spent
        FROM e
        WHERE student_id IS NOT NULL
        ORDER BY student_id, ord DESC
    ) AS v
    WHERE w.student_id = v.student_id
),
opened AS (
    INSERT INTO payments
        (payment_id, student_id, course_id, amount, currency, status, provider,
         provider_payment_id, payment_url, expires_at, source_event_id)
    SELECT payment_id, 'raw', 'course', 49900, 'INR', 'initiated', 'mock', 'raw_' || payment_id,
           'https://mock-gateway.invalid/checkout/raw', now() + interval '30 minutes', 'raw'
    FROM e
    WHERE status = 'initiated'
),
moved AS (
    UPDATE payments AS p
    SET status = e.status, updated_at = now()
    FROM e
    WHERE e.status <> 'initiated' AND p.provider = 'mock' AND p.provider_payment_id = e.payment_id
),
transitions AS (
    INSERT INTO payment_transitions
        (payment_id, status, from_status, result_topic, result_key, result_value, source_event_id)
    SELECT payment_id, 'initiated', NULL, topic, key, value, 'raw'
    FROM e
    WHERE status = 'initiated'
    UNION ALL
    SELECT p.payment_id, e.status, 'initiated', e.topic, e.key, e.value, 'raw'
    FROM e
    JOIN payments AS p ON p.provider = 'mock' AND p.provider_payment_id = e.payment_id
    WHERE e.status <> 'initiated'
)
INSERT INTO outbox (topic, key, value, headers)
SELECT topic, key, value, ''::bytea
FROM e
WHERE $12::boolean OR e.payment_id IS NOT NULL
ORDER BY ord
