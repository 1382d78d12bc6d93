-- The audit trail of honoured privileged requests (adjustments, refunds): one row each, written
-- in the transaction that applies the request, never changed or removed. The triggers refuse
-- UPDATE, DELETE and TRUNCATE to every role (a table owner could still drop them: keep the
-- worker's database role from owning the schema in production, docs/security.md).
CREATE TABLE admin_audit (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    action text NOT NULL,
    subject text NOT NULL,
    reference_id text NOT NULL,
    actor_id text NOT NULL,
    actor_role text NOT NULL,
    event_source text NOT NULL,
    event_id text NOT NULL,
    change jsonb NOT NULL,
    -- A request is honoured once: its effect is keyed alike (CONTRACT section 3).
    UNIQUE (action, subject, reference_id)
);

CREATE FUNCTION admin_audit_is_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'admin_audit is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER admin_audit_no_change BEFORE UPDATE OR DELETE ON admin_audit
    FOR EACH ROW EXECUTE FUNCTION admin_audit_is_append_only();
CREATE TRIGGER admin_audit_no_truncate BEFORE TRUNCATE ON admin_audit
    FOR EACH STATEMENT EXECUTE FUNCTION admin_audit_is_append_only();
