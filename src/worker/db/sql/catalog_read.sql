-- What a batch needs of the catalog, once its wallets are locked: the items it names ($1),
-- locked in id order until commit (stock is taken, and items replaced, by one transaction at a
-- time); the applied redemptions of items by students ($2 students, $3 items), for its
-- redemptions by item; and the versions applied before ($4 items, $5 versions), for its
-- upserts. Rows cast to base types, as in coins_read.
WITH locked AS (
    SELECT item_id, version, title, cost_coins, stock, active_from, active_until,
           per_student_limit
    FROM catalog_items
    WHERE item_id = ANY($1::text[])
    ORDER BY item_id
    FOR UPDATE
)
SELECT
    ARRAY(
        SELECT ROW(l.item_id::text, l.version::bigint, l.title::text, l.cost_coins::bigint,
                   l.stock::bigint, l.active_from::timestamptz, l.active_until::timestamptz,
                   l.per_student_limit::bigint)
        FROM locked AS l
    ) AS items,
    ARRAY(
        SELECT ROW(r.student_id::text, r.item_id::text, r.redeemed::bigint)
        FROM catalog_redemptions AS r
        JOIN unnest($2::text[], $3::text[]) AS k (student_id, item_id)
            ON r.student_id = k.student_id AND r.item_id = k.item_id
    ) AS redeemed,
    ARRAY(
        SELECT ROW(v.item_id::text, v.version::bigint, v.digest::text, v.result_value::bytea)
        FROM catalog_versions AS v
        JOIN unnest($4::text[], $5::bigint[]) AS k (item_id, version)
            ON v.item_id = k.item_id AND v.version = k.version
    ) AS versions
