-- What a batch's upserts need of the catalog: the items they name ($1), locked in id order
-- until commit (stock is taken, and items replaced, by one transaction at a time; a batch's
-- redemptions by item locked theirs in coins_read, after the wallets), and the versions applied
-- before ($2 items, $3 versions). Rows cast to base types, as in coins_read.
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
        SELECT ROW(v.item_id::text, v.version::bigint, v.digest::text, v.result_value::bytea)
        FROM catalog_versions AS v
        JOIN unnest($2::text[], $3::bigint[]) AS k (item_id, version)
            ON v.item_id = k.item_id AND v.version = k.version
    ) AS versions
