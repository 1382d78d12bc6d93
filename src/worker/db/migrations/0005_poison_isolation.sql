-- One message never stops the worker (CONTRACT sections 3 and 6).

-- Answers no decision repeats (conflicts, `not_authorized`, a webhook's refusal or repeat), kept
-- by the event that got them: a redelivered event (same CloudEvents type, source and id) repeats
-- its first answer byte for byte. Keyed by a UUIDv5 of (type, source, id): a source may be 1000
-- characters long, too long for a btree key.
CREATE TABLE event_answers (
    answer_id     uuid PRIMARY KEY,
    event_type    text NOT NULL,
    event_source  text NOT NULL,
    event_id      ref_id NOT NULL,
    result_topic  text NOT NULL,
    result_key    bytea,
    result_value  bytea NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- Kafka headers as bytes, not JSON text: a header name may hold NUL, which jsonb refuses. Per
-- header: a 4-byte name length, the UTF-8 name, a 4-byte value length (-1: none), the value
-- (worker.core.messages.encode_headers). Rows queued before this migration are converted.
ALTER TABLE outbox ADD COLUMN header_bytes bytea NOT NULL DEFAULT '';
UPDATE outbox
SET header_bytes = coalesce(
    (
        SELECT string_agg(
            int4send(octet_length(convert_to(h ->> 0, 'UTF8'))) || convert_to(h ->> 0, 'UTF8')
            || CASE
                WHEN jsonb_typeof(h -> 1) = 'null' THEN int4send(-1)
                ELSE int4send(octet_length(decode(h ->> 1, 'base64'))) || decode(h ->> 1, 'base64')
            END,
            ''::bytea ORDER BY position
        )
        FROM jsonb_array_elements(outbox.headers) WITH ORDINALITY AS e (h, position)
    ),
    ''::bytea
);
ALTER TABLE outbox DROP COLUMN headers;
ALTER TABLE outbox RENAME COLUMN header_bytes TO headers;
ALTER TABLE outbox ALTER COLUMN headers DROP DEFAULT;

-- Messages that could not be published for a reason retrying cannot cure (too large for the
-- broker, say): moved out of the outbox so they never block the messages behind them, kept
-- until an operator re-drives them (`payment-worker parked`).
CREATE TABLE parked_messages (
    seq            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    outbox_seq     bigint NOT NULL,
    topic          text NOT NULL,
    key            bytea,
    value          bytea,
    headers        bytea NOT NULL,
    error_class    text NOT NULL,
    error_message  text NOT NULL,
    queued_at      timestamptz NOT NULL,
    parked_at      timestamptz NOT NULL DEFAULT now()
);
