-- Writes what a batch's coin commands (or an expiry sweep) decided, in one statement: the new
-- decisions with the result event each one answered, the balances the wallets end with, the
-- ledger entries in decision order (seq follows it: the newest has the highest), the answers by
-- event, and the lots made or drawn on (with the input partition of their student's events in
-- the batch, also for a lot drawn on: its expiry follows the student's events where they come
-- from now; 0014). The caller holds the wallets' locks
-- (coins_lock_wallets, coins_expiry_due), and a wallet's lots are written only under its lock.
-- A decision, entry or answer whose key is taken is skipped: the caller compares the counts
-- returned and fails the batch (a decision or an answer another transaction kept meanwhile: it
-- is retried, and then repeats that one). So is a wallet that does not exist, and an entry
-- whose wallet this statement does not update: the ledger never names a wallet that does not
-- exist (0015: no foreign key checks each entry).
WITH decided AS (
    INSERT INTO coin_requests
        (student_id, type, reference_id, requested_amount, outcome, result_topic, result_value,
         item_id)
    SELECT student_id, ledger_type, reference_id, requested_amount, outcome, result_topic,
           result_value, item_id
    FROM unnest($1::coin_request_row[])
        AS d (student_id, ledger_type, reference_id, requested_amount, outcome, result_topic,
              result_value, item_id)
    ON CONFLICT DO NOTHING
    RETURNING 1
),
balances AS (
    UPDATE coin_wallets AS w
    SET balance = b.balance,
        lifetime_earned = b.lifetime_earned,
        lifetime_spent = b.lifetime_spent,
        lotted = b.lotted,
        updated_at = now()
    FROM unnest($2::coin_wallet_row[])
        AS b (student_id, balance, lifetime_earned, lifetime_spent, lotted)
    WHERE w.student_id = b.student_id
    RETURNING w.student_id
),
entries AS (
    INSERT INTO coin_transactions
        (transaction_id, student_id, type, reference_id, amount, balance_after,
         source_event_id)
    SELECT transaction_id, student_id, ledger_type, reference_id, amount, balance_after,
           source_event_id
    FROM unnest($3::coin_entry_row[])
        WITH ORDINALITY AS e (transaction_id, student_id, ledger_type, reference_id, amount,
                              balance_after, source_event_id, position)
    WHERE student_id IN (SELECT student_id FROM balances)
    ORDER BY position
    ON CONFLICT DO NOTHING
    RETURNING 1
),
answered AS (
    INSERT INTO event_answers
        (answer_id, event_type, event_source, event_id, result_topic, result_key, result_value)
    SELECT answer_id, event_type, event_source, event_id, result_topic, result_key,
           result_value
    FROM unnest($4::event_answer_row[])
        AS a (answer_id, event_type, event_source, event_id, result_topic, result_key,
              result_value)
    ON CONFLICT DO NOTHING
    RETURNING 1
),
lots AS (
    INSERT INTO coin_lots (transaction_id, student_id, amount, remaining, expires_at,
                           input_partition)
    SELECT transaction_id, student_id, amount, remaining, expires_at, input_partition
    FROM unnest($5::coin_lot_row[])
        AS l (transaction_id, student_id, amount, remaining, expires_at, input_partition)
    ON CONFLICT (transaction_id) DO UPDATE
        SET remaining = EXCLUDED.remaining,
            input_partition = coalesce(EXCLUDED.input_partition, coin_lots.input_partition)
)
SELECT (SELECT count(*) FROM decided) AS decided, (SELECT count(*) FROM entries) AS entered,
       (SELECT count(*) FROM answered) AS answered, (SELECT count(*) FROM balances) AS balanced
