-- Earlier decisions for a batch's refund ids ($1), with the result each one answered.
SELECT refund_id, payment_id, outcome, actor_id, reason, result_topic, result_key, result_value,
       source_event_id
FROM payment_refunds
WHERE refund_id = ANY($1::text[])
