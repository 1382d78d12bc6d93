-- The moves earlier webhooks caused, by the providers' own event ids ($1), with the provider of
-- each moved payment (the caller matches provider and id).
SELECT p.provider, t.provider_event_id, t.payment_id, t.result_topic, t.result_key,
       t.result_value
FROM payment_transitions AS t
JOIN payments AS p USING (payment_id)
WHERE t.provider_event_id = ANY($1::text[])
