-- Cheaper wallet and ledger writes; the ledger still never names a wallet that does not exist.
--
-- Both tables are locked first, wallets before entries, the order in which every batch takes
-- them: a batch under way finishes first, later ones wait, and none deadlocks with this
-- migration (dropping the key below locks entries, then wallets).
LOCK TABLE coin_wallets, coin_transactions IN ACCESS EXCLUSIVE MODE;

-- A batch updates each of its wallets once. With room left in each page (30%), the new version
-- of a wallet row usually fits beside the old one: a heap-only update, which writes no index
-- entry. Only pages written from now on keep the room; `VACUUM FULL coin_wallets` (which
-- blocks the table while it runs) rewrites the existing ones.
ALTER TABLE coin_wallets SET (fillfactor = 70);

-- The foreign key from ledger entries to wallets checked every new entry in a trigger of its
-- own: 6 of the 48 µs of PostgreSQL CPU per course completion. The statement that writes
-- entries (coins_write) writes only those whose wallet it updates in the same statement, and
-- its caller fails the batch when an entry or a wallet is missing; `payment-worker ledger
-- check` finds entries of a missing wallet, however written. What the key also prevented,
-- the triggers below refuse: removing a wallet, and changing whose wallet or entry a row is.
-- No flow of the worker does either.
ALTER TABLE coin_transactions DROP CONSTRAINT coin_transactions_student_id_fkey;

CREATE FUNCTION coin_wallets_are_kept() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '%: wallets are never removed, nor entries or wallets moved to another '
                    'student: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'restrict_violation';  -- an integrity error: never retried
END
$$;

CREATE TRIGGER coin_wallets_no_delete BEFORE DELETE ON coin_wallets
    FOR EACH STATEMENT EXECUTE FUNCTION coin_wallets_are_kept();
CREATE TRIGGER coin_wallets_no_truncate BEFORE TRUNCATE ON coin_wallets
    FOR EACH STATEMENT EXECUTE FUNCTION coin_wallets_are_kept();
CREATE TRIGGER coin_wallets_no_new_student BEFORE UPDATE OF student_id ON coin_wallets
    FOR EACH STATEMENT EXECUTE FUNCTION coin_wallets_are_kept();
CREATE TRIGGER coin_transactions_no_new_student BEFORE UPDATE OF student_id ON coin_transactions
    FOR EACH STATEMENT EXECUTE FUNCTION coin_wallets_are_kept();
