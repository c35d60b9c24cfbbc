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
    last_seen_at timestamptz,
    -- Whether the notification webhook may write to this user about unread messages; the
    -- application's backend switches it per user (PUT /v1/server/users/{id}/notifications).
    notify_webhook boolean NOT NULL DEFAULT true
);
ALTER TABLE users ADD COLUMN IF NOT EXISTS notify_webhook boolean NOT NULL DEFAULT true;

-- last_seq is the per-conversation message counter. Sending a message increments it with
-- UPDATE ... RETURNING, which holds the row lock until commit: seq is gap-free and its order
-- is commit order within a conversation.
CREATE TABLE IF NOT EXISTS conversations (
    id          uuid        NOT NULL PRIMARY KEY DEFAULT gen_random_uuid(),
    kind        text        NOT NULL CHECK (kind IN ('direct', 'group')),
    title       text,
    -- The two members of a direct conversation, smaller id first; the unique index makes
    -- "get or create" race-free. A direct conversation the server API opens with an
    -- external_id is one of its own (a buyer and a seller talk about each listing apart),
    -- so the pair is unique only among direct conversations without one.
    direct_a    text REFERENCES users (id),
    direct_b    text REFERENCES users (id),
    last_seq    bigint      NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    -- Time of the last message, or creation time while empty: the "most recently active" key.
    activity_at timestamptz NOT NULL DEFAULT now(),
    -- The application's own key for the conversation (a listing, a booking): unique, so
    -- that creating by external_id is idempotent and race-free (the unique index decides).
    external_id text,
    -- An object the application attaches (≤ 4 KiB, checked by the API) that every
    -- participant sees in the conversation object.
    metadata    jsonb       NOT NULL DEFAULT '{}',
    -- Once set, nobody may send (409 conversation_closed); history stays readable.
    closed_at   timestamptz,
    CHECK ((kind = 'direct') = (direct_a IS NOT NULL AND direct_b IS NOT NULL AND direct_a < direct_b))
);
-- Databases from schema version 2 get the server API's columns.
ALTER TABLE conversations ADD COLUMN IF NOT EXISTS external_id text;
ALTER TABLE conversations ADD COLUMN IF NOT EXISTS metadata jsonb NOT NULL DEFAULT '{}';
ALTER TABLE conversations ADD COLUMN IF NOT EXISTS closed_at timestamptz;
CREATE UNIQUE INDEX IF NOT EXISTS conversations_external_id ON conversations (external_id)
    WHERE external_id IS NOT NULL;
-- Schema version 2's index covered every direct conversation; its successor leaves out
-- those with an external_id (created before it, so the pair stays unique meanwhile).
CREATE UNIQUE INDEX IF NOT EXISTS conversations_direct_pair ON conversations (direct_a, direct_b)
    WHERE kind = 'direct' AND external_id IS NULL;
DROP INDEX IF EXISTS conversations_direct;

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
    -- NULL for a system message: the application's backend posted it, no participant did.
    sender_id       text,
    body            text        NOT NULL,
    client_id       text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    edited_at       timestamptz,
    deleted_at      timestamptz,
    kind            text        NOT NULL DEFAULT 'user',
    UNIQUE (conversation_id, seq),
    CONSTRAINT messages_kind CHECK ((kind = 'user' AND sender_id IS NOT NULL) OR (kind = 'system' AND sender_id IS NULL))
);
-- Databases from schema version 2: system messages have no sender.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM information_schema.columns
                   WHERE table_schema = current_schema() AND table_name = 'messages' AND column_name = 'kind') THEN
        ALTER TABLE messages ADD COLUMN kind text NOT NULL DEFAULT 'user';
        ALTER TABLE messages ALTER COLUMN sender_id DROP NOT NULL;
        ALTER TABLE messages ADD CONSTRAINT messages_kind
            CHECK ((kind = 'user' AND sender_id IS NOT NULL) OR (kind = 'system' AND sender_id IS NULL));
    END IF;
END
$$;
-- The idempotency key: a repeated send with the same client_id finds the original. Partial,
-- so a send without a client_id pays for no entry.
CREATE UNIQUE INDEX IF NOT EXISTS messages_client_id ON messages (conversation_id, sender_id, client_id)
    WHERE client_id IS NOT NULL;
-- The same key for system messages, whose NULL sender the index above cannot tell apart.
CREATE UNIQUE INDEX IF NOT EXISTS messages_system_client_id ON messages (conversation_id, client_id)
    WHERE client_id IS NOT NULL AND sender_id IS NULL;

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
-- Dropped and created rather than replaced: CREATE OR REPLACE cannot insert columns
-- (schema version 3 added some), and nothing stored depends on a view.
DROP VIEW IF EXISTS member_conversations;
CREATE VIEW member_conversations AS
SELECT m.user_id AS member_id, c.id, c.kind, c.title, c.created_at, c.updated_at, c.activity_at,
    c.external_id, c.metadata, c.closed_at,
    m.last_read_seq,
    -- IS DISTINCT FROM: a system message (no sender) is unread for every participant.
    (SELECT count(*) FROM messages x
     WHERE x.conversation_id = c.id AND x.seq > m.last_read_seq
       AND x.sender_id IS DISTINCT FROM m.user_id AND x.deleted_at IS NULL) AS unread_count,
    lm.id AS lm_id, lm.seq AS lm_seq, lm.sender_id AS lm_sender_id, lm.body AS lm_body,
    lm.client_id AS lm_client_id, lm.created_at AS lm_created_at, lm.edited_at AS lm_edited_at,
    lm.deleted_at AS lm_deleted_at, lm.kind AS lm_kind
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
