-- The items on offer at $1 (active_from <= $1 < active_until, or no end), by id, at most $2.
SELECT item_id, title, cost_coins, stock, active_from, active_until, per_student_limit
FROM catalog_items
WHERE active_from <= $1 AND (active_until IS NULL OR active_until > $1)
ORDER BY item_id
LIMIT $2
