-- Creates missing wallets (balance 0) so they can be locked; sorted to keep lock order stable.
INSERT INTO coin_wallets (student_id)
SELECT student_id FROM unnest($1::text[]) AS s (student_id) ORDER BY student_id
ON CONFLICT (student_id) DO NOTHING
