-- Appends a batch's ledger entries in decision order (seq follows it: newest has the highest).
INSERT INTO coin_transactions
    (transaction_id, student_id, type, reference_id, amount, balance_after, source_event_id)
SELECT transaction_id, student_id, ledger_type, reference_id, amount, balance_after,
       source_event_id
FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::bigint[],
            $7::text[])
    WITH ORDINALITY AS e (transaction_id, student_id, ledger_type, reference_id, amount,
                          balance_after, source_event_id, position)
ORDER BY position
