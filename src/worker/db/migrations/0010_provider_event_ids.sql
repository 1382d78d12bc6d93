-- A provider's retry of a webhook (same provider event id, new CloudEvent) repeats the result
-- its first delivery got and changes nothing (CONTRACT section 8): each transition a webhook
-- caused keeps the provider's event id, found by this index. Kept as long as the transition
-- (for ever), which covers every provider's retry window (Stripe 3 days, Razorpay 24 hours).
ALTER TABLE payment_transitions ADD COLUMN provider_event_id text;
CREATE INDEX payment_transitions_by_provider_event ON payment_transitions (provider_event_id)
    WHERE provider_event_id IS NOT NULL;
