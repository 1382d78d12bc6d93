-- Whether any coin result still waits in the outbox (queued while a member's assignment was not
-- aligned): the consume loop publishes coin results from memory only once none does.
SELECT EXISTS (SELECT 1 FROM outbox WHERE topic LIKE 'coins.%')
