-- Streak bonuses (CONTRACT section 10): a ledger type of their own, and each student's runs of
-- consecutive UTC days with a course completion, named by their first day. A student's runs
-- never touch: two that would are merged into one.
--
-- The wider type checks are added NOT VALID: the narrower ones they replace held for every
-- existing row, so no scan of the ledger (under this migration's exclusive lock, while
-- workers and the read API wait) is needed; new rows are checked as before.
ALTER TABLE coin_transactions DROP CONSTRAINT coin_transactions_type_check;
ALTER TABLE coin_transactions ADD CONSTRAINT coin_transactions_type_check CHECK (
    type IN ('course_completion', 'referral', 'manual_adjustment', 'redemption', 'streak_bonus')
) NOT VALID;
ALTER TABLE coin_requests DROP CONSTRAINT coin_requests_type_check;
ALTER TABLE coin_requests ADD CONSTRAINT coin_requests_type_check CHECK (
    type IN ('course_completion', 'referral', 'manual_adjustment', 'redemption', 'streak_bonus')
) NOT VALID;

CREATE TABLE course_streaks (
    student_id ref_id NOT NULL,
    first_day  date NOT NULL,
    last_day   date NOT NULL CHECK (last_day >= first_day),
    PRIMARY KEY (student_id, first_day)
);

-- A course completion delivered again finds the bonuses it earned by its event id.
CREATE INDEX coin_transactions_streak_bonus_by_event
    ON coin_transactions (student_id, source_event_id) WHERE type = 'streak_bonus';
