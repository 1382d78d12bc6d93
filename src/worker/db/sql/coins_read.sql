-- What a batch's coin commands need to know, once their wallets are locked: the earlier
-- decisions for its keys ($1 students, $2 ledger types, $3 references) and the answers earlier
-- batches gave events with these ids ($4), and the open lots of the students it debits that
-- have some ($5), earliest deadline first; for its course completions, under streak rules, the
-- runs of their students that hold or touch their days ($6 students, $7 days), and the streak
-- bonuses earlier deliveries of its course completion events earned ($8 students, $9 event ids),
-- in ledger order; for its redemptions by item, the items ($10), locked in id order until
-- commit (stock is taken, and items replaced, by one transaction at a time: the lock waits
-- for the other, and the row read is the one it left), and the students' counts of them ($11
-- students, $12 items), which only a holder of the student's wallet lock writes, as all the
-- rest read here. Arrays of rows, each row's fields in the order written here, cast to their
-- base types (asyncpg has no decoder for a domain inside a row, and that error would fail every
-- batch as an outage; tests/unit/test_queries.py checks); the caller keeps the answers whose
-- event type and source match too.
WITH items AS (
    SELECT item_id, version, title, cost_coins, stock, active_from, active_until,
           per_student_limit
    FROM catalog_items
    WHERE item_id = ANY($10::text[])
    ORDER BY item_id
    FOR UPDATE
)
SELECT
    ARRAY(
        SELECT ROW(r.student_id::text, r.type::text, r.reference_id::text,
                   r.requested_amount::bigint, r.outcome::text, r.result_topic::text,
                   r.result_value::bytea, r.item_id::text)
        FROM coin_requests AS r
        JOIN unnest($1::text[], $2::text[], $3::text[]) AS k (student_id, type, reference_id)
            ON r.student_id = k.student_id AND r.type = k.type
                AND r.reference_id = k.reference_id
    ) AS decisions,
    ARRAY(
        SELECT ROW(a.event_type::text, a.event_source::text, a.event_id::text,
                   a.result_topic::text, a.result_key::bytea, a.result_value::bytea)
        FROM event_answers AS a
        WHERE a.event_id = ANY($4::text[])
    ) AS answers,
    ARRAY(
        SELECT ROW(l.transaction_id::text, l.student_id::text, l.amount::bigint,
                   l.remaining::bigint, l.expires_at::timestamptz)
        FROM coin_lots AS l
        WHERE l.student_id = ANY($5::text[]) AND l.remaining > 0
        ORDER BY l.student_id, l.expires_at, l.transaction_id
    ) AS lots,
    ARRAY(
        SELECT DISTINCT ROW(s.student_id::text, s.first_day, s.last_day)
        FROM course_streaks AS s
        JOIN unnest($6::text[], $7::date[]) AS d (student_id, day)
            ON s.student_id = d.student_id
                AND s.first_day <= d.day + 1 AND s.last_day >= d.day - 1
    ) AS runs,
    ARRAY(
        SELECT ROW(t.student_id::text, t.source_event_id::text, r.result_topic::text,
                   r.result_value::bytea)
        FROM coin_transactions AS t
        JOIN unnest($8::text[], $9::text[]) AS e (student_id, event_id)
            ON t.student_id = e.student_id AND t.source_event_id = e.event_id
        JOIN coin_requests AS r
            ON r.student_id = t.student_id AND r.type = t.type
                AND r.reference_id = t.reference_id
        WHERE t.type = 'streak_bonus'
        ORDER BY t.seq
    ) AS bonuses,
    ARRAY(
        SELECT ROW(i.item_id::text, i.version::bigint, i.title::text, i.cost_coins::bigint,
                   i.stock::bigint, i.active_from::timestamptz, i.active_until::timestamptz,
                   i.per_student_limit::bigint)
        FROM items AS i
    ) AS items,
    ARRAY(
        SELECT ROW(r.student_id::text, r.item_id::text, r.redeemed::bigint)
        FROM catalog_redemptions AS r
        JOIN unnest($11::text[], $12::text[]) AS k (student_id, item_id)
            ON r.student_id = k.student_id AND r.item_id = k.item_id
    ) AS redeemed
