-- Remembers a batch's refund decisions. A refund id another worker decided meanwhile is
-- skipped; the caller compares the returned ids and retries the batch.
INSERT INTO payment_refunds
    (refund_id, payment_id, outcome, actor_id, reason, result_topic, result_key, result_value,
     source_event_id)
SELECT refund_id, payment_id, outcome, actor_id, reason, result_topic, result_key, result_value,
       source_event_id
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
            $7::bytea[], $8::bytea[], $9::text[])
    AS v (refund_id, payment_id, outcome, actor_id, reason, result_topic, result_key,
          result_value, source_event_id)
ON CONFLICT DO NOTHING
RETURNING refund_id
