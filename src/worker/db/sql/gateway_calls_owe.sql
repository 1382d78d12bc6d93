-- Counts requests replayed while their call is pending ($1 kinds, $2 reference ids, $3 how
-- many): each is answered with the call's result when it is written.
UPDATE gateway_calls AS c
SET answers_owed = c.answers_owed + v.owed
FROM unnest($1::text[], $2::text[], $3::int[]) AS v (kind, reference_id, owed)
WHERE c.kind = v.kind AND c.reference_id = v.reference_id
