-- Writes the balances a batch ends with (the wallets are locked by coins_lock_wallets).
UPDATE coin_wallets AS w
SET balance = v.balance,
    lifetime_earned = v.lifetime_earned,
    lifetime_spent = v.lifetime_spent,
    updated_at = now()
FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[])
    AS v (student_id, balance, lifetime_earned, lifetime_spent)
WHERE w.student_id = v.student_id
