-- chatd schema. Applied by `chatd migrate` and at `chatd serve` start under an advisory
-- lock; every statement is idempotent so a second run changes nothing. Bump schema_version
-- (db.CurrentSchemaVersion in db/store.go) when this file changes.

CREATE TABLE IF NOT EXISTS schema_version (
    version    integer     NOT NULL PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- Users exist because a token named them or a conversation included them; the display name
-- is unknown (NULL) until the user signs in with a `name` claim.
CREATE TABLE IF NOT EXISTS users (
    id           text        NOT NULL PRIMARY KEY,
    name         text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz
);

-- last_seq is the per-conversation message counter. Sending a message increments it with
-- UPDATE ... RETURNING, which holds the row lock until commit: seq is gap-free and its order
-- is commit order within a conversation.
CREATE TABLE IF NOT EXISTS conversations (
    id          uuid        NOT NULL PRIMARY KEY DEFAULT gen_random_uuid(),
    kind        text        NOT NULL CHECK (kind IN ('direct', 'group')),
    title       text,
    -- The two members of a direct conversation, smaller id first; the unique index makes
    -- "get or create" race-free.
    direct_a    text REFERENCES users (id),
    direct_b    text REFERENCES users (id),
    last_seq    bigint      NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    -- Time of the last message, or creation time while empty: the "most recently active" key.
    activity_at timestamptz NOT NULL DEFAULT now(),
    CHECK ((kind = 'direct') = (direct_a IS NOT NULL AND direct_b IS NOT NULL AND direct_a < direct_b))
);
CREATE UNIQUE INDEX IF NOT EXISTS conversations_direct ON conversations (direct_a, direct_b)
    WHERE kind = 'direct';

-- took_part: the member has acted in the conversation (created it, sent a message in it or
-- marked it read). A user's presence is visible only through conversations it took part in,
-- so a conversation a stranger opened with it reveals nothing (API.md, Presence visibility).
CREATE TABLE IF NOT EXISTS members (
    conversation_id uuid        NOT NULL REFERENCES conversations (id),
    user_id         text        NOT NULL REFERENCES users (id),
    last_read_seq   bigint      NOT NULL DEFAULT 0,
    joined_at       timestamptz NOT NULL DEFAULT now(),
    took_part       boolean     NOT NULL DEFAULT false,
    PRIMARY KEY (conversation_id, user_id)
);
CREATE INDEX IF NOT EXISTS members_user ON members (user_id, conversation_id);
-- Databases from schema version 1 get the column; a member whose read position moved has
-- sent or read, the creator of an untouched conversation is not known and stays hidden.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM information_schema.columns
                   WHERE table_schema = current_schema() AND table_name = 'members' AND column_name = 'took_part') THEN
        ALTER TABLE members ADD COLUMN took_part boolean NOT NULL DEFAULT false;
        UPDATE members SET took_part = true WHERE last_read_seq > 0;
    END IF;
END
$$;

-- messages and events carry no foreign keys, on purpose: each check is a row lock on the
-- referenced row (the sender's users row, the conversation), and at thousands of sends per
-- second those checks cost more than the inserts themselves. Integrity comes from how rows
-- are written: every message and event is inserted by the statement that has just updated
-- (and locked) its conversation, by a sender checked to be a member, and nothing is ever
-- deleted from conversations, users or messages.
CREATE TABLE IF NOT EXISTS messages (
    id              uuid        NOT NULL PRIMARY KEY DEFAULT gen_random_uuid(),
    conversation_id uuid        NOT NULL,
    seq             bigint      NOT NULL,
    sender_id       text        NOT NULL,
    body            text        NOT NULL,
    client_id       text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    edited_at       timestamptz,
    deleted_at      timestamptz,
    UNIQUE (conversation_id, seq)
);
-- The idempotency key: a repeated send with the same client_id finds the original. Partial,
-- so a send without a client_id pays for no entry.
CREATE UNIQUE INDEX IF NOT EXISTS messages_client_id ON messages (conversation_id, sender_id, client_id)
    WHERE client_id IS NOT NULL;

-- Full-text search (GET /v1/search). The text search configuration (the language) is
-- configurable (CHAT_SEARCH_LANGUAGE), and a GIN expression index serves only queries whose
-- expression is the index's own, configuration included. Queries are static (sqlc), so
-- the configuration lives in three immutable SQL functions that the index and the queries
-- call: chat_search_vector (the index expression), chat_search_query and
-- chat_search_config. PostgreSQL inlines them, so the planner matches the index and sees
-- the configuration as a constant. Their bodies name only pg_catalog objects and the
-- configuration by its qualified name, so inlining gives the same expression under any
-- search_path (maintenance commands run with a restricted one). They are created here once
-- with `simple`; db.SetSearchLanguage replaces all three and rebuilds the index when the
-- setting changes. A stored tsvector column was the alternative: it serves any
-- configuration too, but every `SELECT *` of messages (history, events) would carry it,
-- and a change of language rewrites the table either way.
DO $$
BEGIN
    IF to_regprocedure('chat_search_config()') IS NULL THEN
        CREATE FUNCTION chat_search_config() RETURNS regconfig
            LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $f$ SELECT 'pg_catalog.simple'::regconfig $f$;
        CREATE FUNCTION chat_search_vector(body text) RETURNS tsvector
            LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $f$ SELECT to_tsvector('pg_catalog.simple'::regconfig, body) $f$;
        CREATE FUNCTION chat_search_query(q text) RETURNS tsquery
            LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $f$ SELECT websearch_to_tsquery('pg_catalog.simple'::regconfig, q) $f$;
    END IF;
END
$$;
-- Deleted messages are never found (their body is erased too), so they stay out of the index.
-- New entries wait in the index's pending list until it is merged, and every search reads
-- the whole list: the default 4 MB made a search of 100,000 messages take 60 ms, measured,
-- so the list is kept to 256 kB (a send merges it once every few hundred messages).
CREATE INDEX IF NOT EXISTS messages_search ON messages USING gin (chat_search_vector(body))
    WITH (gin_pending_list_limit = 256) WHERE deleted_at IS NULL;

-- The durable event log, read by cursor (tx, id). A bigserial alone is not commit order (a
-- transaction can take id 101, another 102 and commit first), so readers only read rows whose
-- writing transaction is older than every transaction still running:
--   WHERE (tx, id) > cursor AND tx < pg_snapshot_xmin(pg_current_snapshot()) ORDER BY tx, id
-- Every row below that fence is committed (or was rolled back and is invisible), so nothing
-- can later appear behind a cursor. See DESIGN-NOTES.md §2.
-- Content is not copied here: message events are rendered from the message row when read,
-- so a replay never resurrects an edited or deleted body.
CREATE TABLE IF NOT EXISTS events (
    tx              xid8        NOT NULL DEFAULT pg_current_xact_id(),
    id              bigserial   NOT NULL,
    conversation_id uuid        NOT NULL,
    type            text        NOT NULL
        CHECK (type IN ('message', 'message_updated', 'message_deleted', 'read', 'conversation')),
    message_id      uuid,
    user_id         text,
    seq             bigint,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tx, id)
);
CREATE INDEX IF NOT EXISTS events_conversation ON events (conversation_id, tx, id);
-- Only retention pruning reads by time; rows arrive in time order, so a BRIN index serves
-- it at almost no cost to inserts.
CREATE INDEX IF NOT EXISTS events_created ON events USING brin (created_at);

-- A conversation as one member sees it: its own read position and unread count, and the
-- last message. GetConversation and ListConversations read it; PostgreSQL inlines the view,
-- so each query plans as if written out. The unread count is an index range over
-- messages (conversation_id, seq) after the read position: what is unread, never the
-- history (db/unread_test.go checks the plans).
CREATE OR REPLACE VIEW member_conversations AS
SELECT m.user_id AS member_id, c.id, c.kind, c.title, c.created_at, c.updated_at, c.activity_at,
    m.last_read_seq,
    (SELECT count(*) FROM messages x
     WHERE x.conversation_id = c.id AND x.seq > m.last_read_seq
       AND x.sender_id <> m.user_id AND x.deleted_at IS NULL) AS unread_count,
    lm.id AS lm_id, lm.seq AS lm_seq, lm.sender_id AS lm_sender_id, lm.body AS lm_body,
    lm.client_id AS lm_client_id, lm.created_at AS lm_created_at, lm.edited_at AS lm_edited_at,
    lm.deleted_at AS lm_deleted_at
FROM members m
JOIN conversations c ON c.id = m.conversation_id
LEFT JOIN messages lm ON lm.conversation_id = c.id AND lm.seq = c.last_seq;

-- The position of the newest event ever pruned by retention: a cursor behind it has lost
-- events and gets a reset; the cursor equal to it is still valid.
CREATE TABLE IF NOT EXISTS event_floor (
    one boolean NOT NULL PRIMARY KEY DEFAULT true CHECK (one),
    tx  xid8    NOT NULL,
    id  bigint  NOT NULL
);
INSERT INTO event_floor (tx, id) VALUES ('0', 0) ON CONFLICT DO NOTHING;

-- Single-use stream tickets, stored so that any instance accepts them. Only a hash of the
-- ticket is kept; the ticket carries the identity and the expiry of the token that minted it.
CREATE TABLE IF NOT EXISTS tickets (
    hash          bytea       NOT NULL PRIMARY KEY,
    user_id       text        NOT NULL,
    token_expires timestamptz NOT NULL,
    expires_at    timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS tickets_expires ON tickets (expires_at);

-- Presence: which instance holds streams of which user. Instances beat every few seconds;
-- an instance that stops beating (it died) is expired by the others, with its rows, so its
-- users go offline within 30 s without anyone's help.
CREATE TABLE IF NOT EXISTS instances (
    id           text        NOT NULL PRIMARY KEY,
    heartbeat_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS presence (
    user_id     text NOT NULL,
    instance_id text NOT NULL,
    PRIMARY KEY (user_id, instance_id)
);
CREATE INDEX IF NOT EXISTS presence_instance ON presence (instance_id);

-- Notification webhooks (notify/). A user may opt out of digests through the server API;
-- notified_at is when the last digest was made for the user, so that a user who stays
-- away gets one digest per absence, not one per message.
ALTER TABLE users ADD COLUMN IF NOT EXISTS notify_webhook boolean NOT NULL DEFAULT true;
ALTER TABLE users ADD COLUMN IF NOT EXISTS notified_at timestamptz;

-- How far the notifier has followed the event log: one row, moved in the transaction that
-- schedules the checks for what it read, so no message is scheduled twice or skipped.
-- The row is created at the log's head by the first notifier that starts.
CREATE TABLE IF NOT EXISTS notify_cursor (
    one boolean NOT NULL PRIMARY KEY DEFAULT true CHECK (one),
    tx  xid8    NOT NULL,
    id  bigint  NOT NULL
);

-- Users with a digest check scheduled (a River job of kind notify_check). The notifier
-- inserts a user here with ON CONFLICT DO NOTHING and schedules a check only for the rows
-- it inserted: a message to a user who already has a check pending costs an index probe,
-- not a write. The check deletes its row before it reads anything (notify/check.go).
CREATE TABLE IF NOT EXISTS notify_pending (
    user_id text        NOT NULL PRIMARY KEY,
    since   timestamptz NOT NULL DEFAULT now()
);
