-- Which of the given payments ($1) have a refund in flight.
SELECT payment_id
FROM payment_refunds
WHERE payment_id = ANY($1::text[]) AND outcome = 'pending'
