-- Writes what a batch's payment decisions (or an expiry sweep, or a provider's answer) change,
-- in one statement: the payments opened, the state the others are left in (locked by
-- payments_lock or payments_due; an update cannot see a row this statement inserts, so the core
-- never lists a payment opened here among them, and the caller checks the count), the
-- statuses reached in the order reached, the new refund decisions, the provider calls to make
-- (due at once, $21 the batch's time; a call already queued stays as it is), the answers by
-- event, and the results to publish, queued in the outbox in the order given (as
-- outbox_enqueue). A payment, transition, refund or answer whose key is taken is skipped: the
-- caller compares the counts returned and retries the batch, which then sees the other worker's
-- rows.
-- A transition or call of a payment skipped on its id still finds it: a payment id taken
-- meanwhile is one that exists (the insert waits for the other transaction's outcome), and the
-- foreign keys are checked at the end of the statement. One skipped on its provider payment id
-- (known at opening only for an instant provider, whose ids derive from the payment id) fails
-- the foreign key: a permanent error, and its record is dead-lettered.
WITH opened AS (
    INSERT INTO payments
        (payment_id, student_id, course_id, amount, currency, description, status,
         status_reason, provider, provider_payment_id, payment_url, expires_at, source_event_id)
    SELECT payment_id, student_id, course_id, amount, currency, description, status,
           status_reason, provider, provider_payment_id, payment_url, expires_at,
           source_event_id
    FROM unnest($1::payment_row[])
        AS n (payment_id, student_id, course_id, amount, currency, description, status,
              status_reason, provider, provider_payment_id, payment_url, expires_at,
              source_event_id)
    ON CONFLICT DO NOTHING
    RETURNING 1
),
changed AS (
    UPDATE payments AS p
    SET status = c.status,
        status_reason = c.status_reason,
        provider_payment_id = c.provider_payment_id,
        payment_url = c.payment_url,
        expires_at = c.expires_at,
        captured_id = c.captured_id,
        updated_at = now()
    FROM unnest($2::payment_update_row[])
        AS c (payment_id, status, status_reason, provider_payment_id, payment_url, expires_at,
              captured_id)
    WHERE p.payment_id = c.payment_id
    RETURNING 1
),
moved AS (
    INSERT INTO payment_transitions
        (payment_id, status, from_status, result_topic, result_key, result_value,
         source_event_id, provider_event_id)
    SELECT payment_id, to_status, from_status, result_topic, result_key, result_value,
           source_event_id, provider_event_id
    FROM unnest($3::payment_transition_row[])
        WITH ORDINALITY AS t (payment_id, to_status, from_status, result_topic, result_key,
                              result_value, source_event_id, provider_event_id, position)
    ORDER BY position
    ON CONFLICT DO NOTHING
    RETURNING 1
),
decided AS (
    INSERT INTO payment_refunds
        (refund_id, payment_id, outcome, actor_id, reason, result_topic, result_key,
         result_value, source_event_id)
    SELECT refund_id, payment_id, outcome, actor_id, reason, result_topic, result_key,
           result_value, source_event_id
    FROM unnest($4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[],
                $10::bytea[], $11::bytea[], $12::text[])
        AS r (refund_id, payment_id, outcome, actor_id, reason, result_topic, result_key,
              result_value, source_event_id)
    ON CONFLICT DO NOTHING
    RETURNING 1
),
called AS (
    INSERT INTO gateway_calls (kind, reference_id, payment_id, not_before)
    SELECT kind, reference_id, payment_id, $21
    FROM unnest($13::text[], $14::text[], $15::text[]) AS g (kind, reference_id, payment_id)
    ON CONFLICT DO NOTHING
),
answered AS (
    INSERT INTO event_answers
        (answer_id, event_type, event_source, event_id, result_topic, result_key, result_value)
    SELECT answer_id, event_type, event_source, event_id, result_topic, result_key,
           result_value
    FROM unnest($16::event_answer_row[])
        AS a (answer_id, event_type, event_source, event_id, result_topic, result_key,
              result_value)
    ON CONFLICT DO NOTHING
    RETURNING 1
),
queued AS (
    INSERT INTO outbox (topic, key, value, headers)
    SELECT topic, key, value, headers
    FROM unnest($17::text[], $18::bytea[], $19::bytea[], $20::bytea[])
        WITH ORDINALITY AS m (topic, key, value, headers, position)
    ORDER BY position
)
SELECT (SELECT count(*) FROM opened) AS opened, (SELECT count(*) FROM changed) AS changed,
       (SELECT count(*) FROM moved) AS moved, (SELECT count(*) FROM decided) AS decided,
       (SELECT count(*) FROM answered) AS answered
