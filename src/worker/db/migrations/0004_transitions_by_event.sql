-- A redelivered webhook event (same CloudEvent id) repeats the result it got the first time,
-- even after the payment has moved on: its transition is found by the event's id.
CREATE INDEX payment_transitions_by_event ON payment_transitions (source_event_id)
    WHERE status IN ('succeeded', 'failed', 'cancelled');
