-- Coin expiry (CONTRACT section 10): each credit made while COIN_EXPIRY_DAYS is set is a lot
-- that expires with it; debits take the lots that expire first; the sweep debits what is left
-- of an expired lot as an `expiry` entry whose reference is the credit's transaction id.
--
-- `coin_wallets.lotted` is the part of the balance held in lots; the rest (every coin credited
-- while expiry was off, including all coins from before this migration) never expires. So a
-- wallet's balance = (balance - lotted) + the remaining coins of its open lots, and adding the
-- column needs no backfill: a constant default and a NOT VALID check, no scan of the wallets.
ALTER TABLE coin_wallets ADD COLUMN lotted bigint NOT NULL DEFAULT 0;
ALTER TABLE coin_wallets ADD CONSTRAINT coin_wallets_lotted_within_balance
    CHECK (lotted >= 0 AND lotted <= balance) NOT VALID;

-- The wider type check NOT VALID, as in 0011: the narrower one held for every existing row.
-- An expiry is no request: coin_requests keeps its types.
ALTER TABLE coin_transactions DROP CONSTRAINT coin_transactions_type_check;
ALTER TABLE coin_transactions ADD CONSTRAINT coin_transactions_type_check CHECK (
    type IN ('course_completion', 'referral', 'manual_adjustment', 'redemption', 'streak_bonus',
             'expiry')
) NOT VALID;

-- A lot is written with its credit and changed only under its wallet's lock (by a batch that
-- debits the wallet, or by the sweep). A lot with nothing left is kept, as the ledger is.
CREATE TABLE coin_lots (
    transaction_id uuid PRIMARY KEY,  -- the credit's coin_transactions.transaction_id
    student_id     ref_id NOT NULL,
    amount         json_safe_int NOT NULL CHECK (amount > 0),
    remaining      json_safe_int NOT NULL CHECK (remaining >= 0 AND remaining <= amount),
    expires_at     timestamptz NOT NULL
);

-- A debit takes a student's open lots, earliest deadline first; the wallet read shows the next.
CREATE INDEX coin_lots_open_by_student
    ON coin_lots (student_id, expires_at, transaction_id) WHERE remaining > 0;
-- The sweep reads only open lots, earliest deadline first.
CREATE INDEX coin_lots_open_by_deadline ON coin_lots (expires_at) WHERE remaining > 0;
