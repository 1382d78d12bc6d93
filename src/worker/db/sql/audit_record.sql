-- Appends a batch's audit records (admin_audit is append-only), in the batch's transaction.
INSERT INTO admin_audit
    (action, subject, reference_id, actor_id, actor_role, event_source, event_id, change)
SELECT action, subject, reference_id, actor_id, actor_role, event_source, event_id,
       change::jsonb
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
            $8::text[]) WITH ORDINALITY
    AS a (action, subject, reference_id, actor_id, actor_role, event_source, event_id, change,
          position)
ORDER BY position
