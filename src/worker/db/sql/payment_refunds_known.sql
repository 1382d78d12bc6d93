-- Earlier decisions for refund ids ($1), with the result each one answered (a gateway call's;
-- a batch reads them in payments_read).
SELECT refund_id, payment_id, outcome, actor_id, reason, result_topic, result_key, result_value,
       source_event_id
FROM payment_refunds
WHERE refund_id = ANY($1::text[])
