-- The runs a batch changed: runs it merged away are deleted ($1 students, $2 first days), and
-- the runs it made or grew are written ($3 students, $4 first days, $5 last days). The two
-- sets never share a (student, first day): a run that grew is only upserted.
WITH merged_away AS (
    DELETE FROM course_streaks AS s
    USING unnest($1::text[], $2::date[]) AS g (student_id, first_day)
    WHERE s.student_id = g.student_id AND s.first_day = g.first_day
)
INSERT INTO course_streaks (student_id, first_day, last_day)
SELECT student_id, first_day, last_day
FROM unnest($3::text[], $4::date[], $5::date[]) AS n (student_id, first_day, last_day)
ON CONFLICT (student_id, first_day) DO UPDATE SET last_day = EXCLUDED.last_day
