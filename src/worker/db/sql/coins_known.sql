-- Earlier decisions for a batch's keys ($1 students, $2 ledger types, $3 references).
SELECT r.student_id, r.type, r.reference_id, r.requested_amount, r.outcome,
       r.result_topic, r.result_value
FROM coin_requests AS r
JOIN unnest($1::text[], $2::text[], $3::text[]) AS k (student_id, type, reference_id)
    ON r.student_id = k.student_id AND r.type = k.type AND r.reference_id = k.reference_id
