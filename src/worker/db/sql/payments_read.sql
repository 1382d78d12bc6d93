-- What a batch's payment commands need to know, once their payments are locked, in one round
-- trip: the result each of the locked payments ($1) announced for each status it reached; the
-- earlier decisions for its refund ids ($2), with the result each answered; which of the
-- payments its refunds name ($3) have a refund in flight; the results earlier webhook events
-- ($4, CloudEvent ids) got, for events delivered again; the moves earlier webhooks caused, by the
-- providers' own event ids ($5), with the provider of each moved payment (the caller matches
-- provider and id); and the answers earlier batches gave events with these ids ($6; the caller
-- keeps those whose type and source match too). Arrays of rows, each row's fields in the order
-- written here, cast to their base types, as in coins_read.
SELECT
    ARRAY(
        SELECT ROW(t.payment_id::text, t.status::text, t.result_topic::text,
                   t.result_key::bytea, t.result_value::bytea)
        FROM payment_transitions AS t
        WHERE t.payment_id = ANY($1::text[])
    ) AS results,
    ARRAY(
        SELECT ROW(f.refund_id::text, f.payment_id::text, f.outcome::text, f.actor_id::text,
                   f.reason::text, f.result_topic::text, f.result_key::bytea,
                   f.result_value::bytea, f.source_event_id::text)
        FROM payment_refunds AS f
        WHERE f.refund_id = ANY($2::text[])
    ) AS refunds,
    ARRAY(
        SELECT f.payment_id::text
        FROM payment_refunds AS f
        WHERE f.payment_id = ANY($3::text[]) AND f.outcome = 'pending'
    ) AS refunding,
    ARRAY(
        SELECT ROW(t.source_event_id::text, t.payment_id::text, t.result_topic::text,
                   t.result_key::bytea, t.result_value::bytea)
        FROM payment_transitions AS t
        WHERE t.source_event_id = ANY($4::text[])
            AND t.status IN ('succeeded', 'failed', 'cancelled', 'expired')
    ) AS webhooks,
    ARRAY(
        SELECT ROW(p.provider::text, t.provider_event_id::text, t.payment_id::text,
                   t.result_topic::text, t.result_key::bytea, t.result_value::bytea)
        FROM payment_transitions AS t
        JOIN payments AS p USING (payment_id)
        WHERE t.provider_event_id = ANY($5::text[])
    ) AS provider_events,
    ARRAY(
        SELECT ROW(a.event_type::text, a.event_source::text, a.event_id::text,
                   a.result_topic::text, a.result_key::bytea, a.result_value::bytea)
        FROM event_answers AS a
        WHERE a.event_id = ANY($6::text[])
    ) AS answers
