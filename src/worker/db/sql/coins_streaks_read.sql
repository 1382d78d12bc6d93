-- What a batch's course completions need under streak rules, once their wallets are locked:
-- the runs of their students that hold or touch their days ($1 students, $2 days), and the
-- streak bonuses earlier deliveries of their events earned ($3 students, $4 event ids), in
-- ledger order. Rows cast to base types, as in coins_read.
SELECT
    ARRAY(
        SELECT DISTINCT ROW(s.student_id::text, s.first_day, s.last_day)
        FROM course_streaks AS s
        JOIN unnest($1::text[], $2::date[]) AS d (student_id, day)
            ON s.student_id = d.student_id
                AND s.first_day <= d.day + 1 AND s.last_day >= d.day - 1
    ) AS runs,
    ARRAY(
        SELECT ROW(t.student_id::text, t.source_event_id::text, r.result_topic::text,
                   r.result_value::bytea)
        FROM coin_transactions AS t
        JOIN unnest($3::text[], $4::text[]) AS e (student_id, event_id)
            ON t.student_id = e.student_id AND t.source_event_id = e.event_id
        JOIN coin_requests AS r
            ON r.student_id = t.student_id AND r.type = t.type
                AND r.reference_id = t.reference_id
        WHERE t.type = 'streak_bonus'
        ORDER BY t.seq
    ) AS bonuses
