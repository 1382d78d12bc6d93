-- Writes what a batch's coin commands (or an expiry sweep) decided, in one statement: the new
-- decisions with the result event each one answered, the balances the wallets end with, the
-- ledger entries in decision order (seq follows it: the newest has the highest), the answers by
-- event, the lots made or drawn on (with the input partition of their student's events in
-- the batch, also for a lot drawn on: its expiry follows the student's events where they come
-- from now; 0014), the stock the redemptions by item left ($6 items, $7 stocks; NULL stays
-- unlimited; the items are locked by coins_read) and their students' counts of them ($8
-- items, $9 students, $10 counts), and the streak runs the batch changed: runs it merged away
-- are deleted ($11 students, $12 first days), and the runs it made or grew are written ($13
-- students, $14 first days, $15 last days; the two sets never share a (student, first day): a
-- run that grew is only upserted). The caller holds the wallets' locks
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
),
stock AS (
    UPDATE catalog_items AS i
    SET stock = s.stock, updated_at = now()
    FROM unnest($6::text[], $7::bigint[]) AS s (item_id, stock)
    WHERE i.item_id = s.item_id
),
redeemed AS (
    INSERT INTO catalog_redemptions (item_id, student_id, redeemed)
    SELECT item_id, student_id, redeemed
    FROM unnest($8::text[], $9::text[], $10::bigint[]) AS r (item_id, student_id, redeemed)
    ON CONFLICT (item_id, student_id) DO UPDATE SET redeemed = EXCLUDED.redeemed
),
merged_away AS (
    DELETE FROM course_streaks AS s
    USING unnest($11::text[], $12::date[]) AS g (student_id, first_day)
    WHERE s.student_id = g.student_id AND s.first_day = g.first_day
),
runs AS (
    INSERT INTO course_streaks (student_id, first_day, last_day)
    SELECT student_id, first_day, last_day
    FROM unnest($13::text[], $14::date[], $15::date[]) AS n (student_id, first_day, last_day)
    ON CONFLICT (student_id, first_day) DO UPDATE SET last_day = EXCLUDED.last_day
)
SELECT (SELECT count(*) FROM decided) AS decided, (SELECT count(*) FROM entries) AS entered,
       (SELECT count(*) FROM answered) AS answered, (SELECT count(*) FROM balances) AS balanced
