-- The voucher catalog (CONTRACT section 10): items admins upsert by version, their remaining
-- stock, and what redemptions by item need (the student's count of each item).

-- A redemption's decision keeps the item it named: a replay naming another is a conflict.
-- Plain text and a NOT VALID check, not the ref_id domain: a domain with a check would make
-- PostgreSQL rewrite the table to add the column; the check holds for every new row.
ALTER TABLE coin_requests ADD COLUMN item_id text;
ALTER TABLE coin_requests ADD CONSTRAINT coin_requests_item_id_check
    CHECK (char_length(item_id) BETWEEN 1 AND 128) NOT VALID;

CREATE TABLE catalog_items (
    item_id           ref_id PRIMARY KEY,
    version           json_safe_int NOT NULL CHECK (version > 0),
    title             text NOT NULL,
    cost_coins        json_safe_int NOT NULL CHECK (cost_coins > 0),
    -- What remains to redeem (NULL: unlimited). Redemptions take it under the row's lock, in
    -- the transaction of their debit: it never goes below zero.
    stock             json_safe_int CHECK (stock >= 0),
    active_from       timestamptz NOT NULL,
    active_until      timestamptz CHECK (active_until > active_from),
    per_student_limit json_safe_int CHECK (per_student_limit > 0),
    updated_at        timestamptz NOT NULL DEFAULT now()
);

-- Every applied upsert, kept forever: a replay of the same version and fields repeats its
-- `catalog.item.updated` byte for byte.
CREATE TABLE catalog_versions (
    item_id      ref_id NOT NULL,
    version      json_safe_int NOT NULL,
    digest       text NOT NULL,  -- of the fields the upsert asked for
    result_value bytea NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (item_id, version)
);

-- Applied redemptions by item and student, for per_student_limit.
CREATE TABLE catalog_redemptions (
    item_id    ref_id NOT NULL,
    student_id ref_id NOT NULL,
    redeemed   json_safe_int NOT NULL CHECK (redeemed > 0),
    PRIMARY KEY (item_id, student_id)
);
