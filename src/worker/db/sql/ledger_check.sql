-- The invariants of the ledger and of payments (CONTRACT section 9), one row per check: its
-- name, how many rows break it, and up to five of them. $1/$2: the legal payment moves (from,
-- to), from worker.core.payments.TRANSITIONS.
WITH entries AS (
    SELECT student_id, sum(amount) AS total FROM coin_transactions GROUP BY student_id
),
lots AS (
    SELECT student_id, sum(remaining) AS held FROM coin_lots GROUP BY student_id
),
checks (name, found) AS (
    SELECT 'negative balance', w.student_id::text
    FROM coin_wallets AS w WHERE w.balance < 0
    UNION ALL
    SELECT 'balance is not the sum of its entries', w.student_id::text
    FROM coin_wallets AS w LEFT JOIN entries AS e USING (student_id)
    WHERE w.balance <> coalesce(e.total, 0)
    UNION ALL
    -- No foreign key holds entries to wallets (0015): the statement that writes them does.
    SELECT 'entries of a wallet that does not exist', e.student_id::text
    FROM entries AS e
    WHERE NOT EXISTS (SELECT 1 FROM coin_wallets AS w WHERE w.student_id = e.student_id)
    UNION ALL
    SELECT 'balance is not lifetime earned minus spent', w.student_id::text
    FROM coin_wallets AS w WHERE w.balance <> w.lifetime_earned - w.lifetime_spent
    UNION ALL
    SELECT 'coins in lots differ from the open lots', w.student_id::text
    FROM coin_wallets AS w LEFT JOIN lots AS l USING (student_id)
    WHERE w.lotted <> coalesce(l.held, 0) OR w.lotted > w.balance
    UNION ALL
    SELECT 'an entry''s balance_after is not the running sum', t.transaction_id::text
    FROM (
        SELECT transaction_id, balance_after,
               sum(amount) OVER (PARTITION BY student_id ORDER BY seq) AS running
        FROM coin_transactions
    ) AS t
    WHERE t.balance_after <> t.running
    UNION ALL
    SELECT 'an applied coin decision without its entry',
           r.student_id || ' ' || r.type || ' ' || r.reference_id
    FROM coin_requests AS r
    WHERE r.outcome = 'applied' AND NOT EXISTS (
        SELECT 1 FROM coin_transactions AS t
        WHERE t.student_id = r.student_id AND t.type = r.type
            AND t.reference_id = r.reference_id
    )
    UNION ALL
    SELECT 'catalog stock below zero', i.item_id::text
    FROM catalog_items AS i WHERE i.stock < 0
    UNION ALL
    SELECT 'an illegal payment move', p.payment_id || ' ' || p.from_status || '->' || p.status
    FROM payment_transitions AS p
    WHERE p.from_status IS NOT NULL AND (p.from_status, p.status) NOT IN (
        SELECT * FROM unnest($1::text[], $2::text[])
    )
    UNION ALL
    SELECT 'a payment move from a status the payment never had',
           p.payment_id || ' ' || p.from_status || '->' || p.status
    FROM payment_transitions AS p
    WHERE p.from_status IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM payment_transitions AS q
        WHERE q.payment_id = p.payment_id AND q.status = p.from_status
    )
    UNION ALL
    SELECT 'a payment status left twice', p.payment_id || ' ' || p.from_status
    FROM payment_transitions AS p
    WHERE p.from_status IS NOT NULL
    GROUP BY p.payment_id, p.from_status
    HAVING count(*) > 1
    UNION ALL
    SELECT 'a payment whose status is not the end of its path', p.payment_id::text
    FROM payments AS p
    WHERE NOT EXISTS (
        SELECT 1 FROM payment_transitions AS t
        WHERE t.payment_id = p.payment_id AND t.status = p.status AND NOT EXISTS (
            SELECT 1 FROM payment_transitions AS n
            WHERE n.payment_id = p.payment_id AND n.from_status = t.status
        )
    )
)
SELECT name, count(*) AS broken, (array_agg(found ORDER BY found))[1:5] AS examples
FROM checks
GROUP BY name
ORDER BY name
