-- Streak bonuses (CONTRACT section 10): a ledger type of their own, and each student's runs of
-- consecutive UTC days with a course completion, named by their first day. A student's runs
-- never touch: two that would are merged into one.
ALTER TABLE coin_transactions DROP CONSTRAINT coin_transactions_type_check;
ALTER TABLE coin_transactions ADD CONSTRAINT coin_transactions_type_check CHECK (
    type IN ('course_completion', 'referral', 'manual_adjustment', 'redemption', 'streak_bonus')
);
ALTER TABLE coin_requests DROP CONSTRAINT coin_requests_type_check;
ALTER TABLE coin_requests ADD CONSTRAINT coin_requests_type_check CHECK (
    type IN ('course_completion', 'referral', 'manual_adjustment', 'redemption', 'streak_bonus')
);

CREATE TABLE course_streaks (
    student_id ref_id NOT NULL,
    first_day  date NOT NULL,
    last_day   date NOT NULL CHECK (last_day >= first_day),
    PRIMARY KEY (student_id, first_day)
);
