-- A page of the audit trail, newest first: records before position $1 (NULL: from the newest),
-- at most $2 rows. Keyset on seq.
SELECT seq, recorded_at, action, subject, reference_id, actor_id, actor_role, event_source,
       event_id, change::text AS change
FROM admin_audit
WHERE seq < coalesce($1::bigint, 9223372036854775807)
ORDER BY seq DESC
LIMIT $2
