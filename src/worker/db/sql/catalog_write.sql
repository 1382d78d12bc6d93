-- Writes what a batch's catalog upserts applied: each item as it now stands (created, or
-- replaced by its higher version; the row is locked by catalog_read or coins_read, or new),
-- and each applied version with its result. A version kept by another transaction meanwhile is
-- skipped: the caller compares the count returned and retries the batch, which then repeats it.
WITH items AS (
    INSERT INTO catalog_items
        (item_id, version, title, cost_coins, stock, active_from, active_until,
         per_student_limit)
    SELECT item_id, version, title, cost_coins, stock, active_from, active_until,
           per_student_limit
    FROM unnest($1::text[], $2::bigint[], $3::text[], $4::bigint[], $5::bigint[],
                $6::timestamptz[], $7::timestamptz[], $8::bigint[])
        AS i (item_id, version, title, cost_coins, stock, active_from, active_until,
              per_student_limit)
    ON CONFLICT (item_id) DO UPDATE SET
        version = EXCLUDED.version,
        title = EXCLUDED.title,
        cost_coins = EXCLUDED.cost_coins,
        stock = EXCLUDED.stock,
        active_from = EXCLUDED.active_from,
        active_until = EXCLUDED.active_until,
        per_student_limit = EXCLUDED.per_student_limit,
        updated_at = now()
    WHERE catalog_items.version < EXCLUDED.version
    RETURNING 1
),
versions AS (
    INSERT INTO catalog_versions (item_id, version, digest, result_value)
    SELECT item_id, version, digest, result_value
    FROM unnest($9::text[], $10::bigint[], $11::text[], $12::bytea[])
        AS v (item_id, version, digest, result_value)
    ON CONFLICT DO NOTHING
    RETURNING 1
)
SELECT (SELECT count(*) FROM items) AS items, (SELECT count(*) FROM versions) AS versions
