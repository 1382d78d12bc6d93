-- What a batch's applied redemptions by item changed: the stock left of each item ($1 items,
-- $2 stocks; NULL stays unlimited), locked by catalog_read, and the counts of applied
-- redemptions by item and student ($3 items, $4 students, $5 counts).
WITH stock AS (
    UPDATE catalog_items AS i
    SET stock = s.stock, updated_at = now()
    FROM unnest($1::text[], $2::bigint[]) AS s (item_id, stock)
    WHERE i.item_id = s.item_id
)
INSERT INTO catalog_redemptions (item_id, student_id, redeemed)
SELECT item_id, student_id, redeemed
FROM unnest($3::text[], $4::text[], $5::bigint[]) AS r (item_id, student_id, redeemed)
ON CONFLICT (item_id, student_id) DO UPDATE SET redeemed = EXCLUDED.redeemed
