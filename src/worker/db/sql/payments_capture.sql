-- Names the money captured for payments a batch opened and saw paid ($1 payment ids, $2 the
-- provider's ids of the money): payments_write's insert takes no captured id (migration 0016's
-- payment_row has none), and a payment opened in a batch is paid in the same batch only when
-- its success is replayed with it. After payments_write, whose rows this statement sees.
UPDATE payments AS p
SET captured_id = v.captured_id
FROM unnest($1::text[], $2::text[]) AS v (payment_id, captured_id)
WHERE p.payment_id = v.payment_id
