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
    -- What a member added later sees of the messages before it joined: 'full' (all of
    -- them) or 'joined' (none). Set by the server API; an add may override it.
    history     text        NOT NULL DEFAULT 'full' CHECK (history IN ('full', 'joined')),
    CHECK ((kind = 'direct') = (direct_a IS NOT NULL AND direct_b IS NOT NULL AND direct_a < direct_b))
);
-- Databases from schema version 2 get the server API's columns.
ALTER TABLE conversations ADD COLUMN IF NOT EXISTS external_id text;
ALTER TABLE conversations ADD COLUMN IF NOT EXISTS metadata jsonb NOT NULL DEFAULT '{}';
ALTER TABLE conversations ADD COLUMN IF NOT EXISTS closed_at timestamptz;
ALTER TABLE conversations ADD COLUMN IF NOT EXISTS history text NOT NULL DEFAULT 'full'
    CHECK (history IN ('full', 'joined'));
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
    -- The transaction that added the member: it receives the conversation's events from
    -- that position of the log on (see member_history for why a position).
    joined_tx       xid8        NOT NULL DEFAULT pg_current_xact_id(),
    -- The member sees messages after this seq only: 0, or the conversation's last seq when
    -- it joined with history 'joined'.
    history_seq     bigint      NOT NULL DEFAULT 0,
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
-- Members from before schema version 3 receive every event of their conversations, as
-- they did: they joined at position 0.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM information_schema.columns
                   WHERE table_schema = current_schema() AND table_name = 'members' AND column_name = 'joined_tx') THEN
        ALTER TABLE members ADD COLUMN joined_tx xid8 NOT NULL DEFAULT '0';
        ALTER TABLE members ALTER COLUMN joined_tx SET DEFAULT pg_current_xact_id();
        ALTER TABLE members ADD COLUMN history_seq bigint NOT NULL DEFAULT 0;
    END IF;
END
$$;

-- Membership that changes, exactly (API.md v1.1: member_added, member_removed).
--
-- Who receives an event is decided by the log's own order, never by who is a member when
-- the event happens to be read: a user receives an event of a conversation when the
-- event's position lies in one of its membership ranges there, [joined_tx, left_tx] in
-- transaction ids (the first part of the log's (tx, id) cursor). `members` holds the open
-- ranges (current members), this table the closed ones. Removing a member is one
-- transaction that deletes its members row, inserts its closed range here and logs
-- member_removed; adding one inserts a members row and logs member_added.
--
-- Why this is exact: the log is read below the fence (schema.sql, events), so when an
-- event at transaction T is read, every transaction older than T has ended, the removal or
-- addition included if its id is below T; one whose id is above T cannot change whether T
-- is in the range. Recipients are therefore the same whenever and wherever the event is
-- read: by each instance's reader, by a replay from an old cursor, before or after the
-- removal committed. A removed user's last event of the conversation is its own
-- member_removed; a resume from a cursor before the removal replays up to it, and nothing
-- after it. The hub (events/hub.go) only has to drop what the log does not order: typing
-- events of the conversation queued for, or arriving at, the removed user's streams.
--
-- Adds and removals take the conversation's send lock first (see LockConversations), so
-- their transaction ids fall between those of messages as their seqs do: history_seq and
-- the range agree on which messages a member added with history 'joined' sees.
CREATE TABLE IF NOT EXISTS member_history (
    conversation_id uuid   NOT NULL,
    user_id         text   NOT NULL,
    joined_tx       xid8   NOT NULL,
    left_tx         xid8   NOT NULL,
    history_seq     bigint NOT NULL,
    PRIMARY KEY (conversation_id, user_id, left_tx)
);
-- A replay walks the user's closed ranges that may still hold unread-by-it events.
CREATE INDEX IF NOT EXISTS member_history_user ON member_history (user_id, left_tx);

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
    -- Attachments by reference, [{url, name, content_type, size, width?, height?}], checked
    -- by the API (api/attachments.go) before they are stored; never the files themselves.
    attachments     jsonb       NOT NULL DEFAULT '[]',
    UNIQUE (conversation_id, seq),
    CONSTRAINT messages_kind CHECK ((kind = 'user' AND sender_id IS NOT NULL) OR (kind = 'system' AND sender_id IS NULL))
);
-- Message ids are UUID version 7 (RFC 9562): 48 bits of Unix milliseconds first, then random
-- bits. New ids land at the right end of the primary key instead of on a random page of it:
-- with a million messages stored, 10,000 sends wrote 16.6 MB of WAL instead of 40.7 MB
-- (random pages take a full-page image after each checkpoint, and once the index outgrows
-- memory each send would read one). Ids stay unguessable in practice (74 random bits), and
-- reveal only what created_at says. PostgreSQL 18 has uuidv7(); this works on 13 and later.
-- Created once, and the default set only when it is not already this (ALTER TABLE would
-- lock the table at every start).
DO $$
BEGIN
    IF to_regprocedure('chat_uuid_v7()') IS NULL THEN
        CREATE FUNCTION chat_uuid_v7() RETURNS uuid LANGUAGE sql VOLATILE PARALLEL SAFE AS $f$
            SELECT pg_catalog.encode(pg_catalog.set_bit(pg_catalog.set_bit(overlay(
                pg_catalog.uuid_send(pg_catalog.gen_random_uuid())
                PLACING substring(pg_catalog.int8send(
                    (extract(epoch FROM pg_catalog.clock_timestamp()) * 1000)::bigint) FROM 3)
                FROM 1 FOR 6), 52, 1), 53, 1), 'hex')::uuid
        $f$;
    END IF;
    IF (SELECT pg_get_expr(d.adbin, d.adrelid) FROM pg_attrdef d
        JOIN pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum
        WHERE d.adrelid = 'messages'::regclass AND a.attname = 'id') IS DISTINCT FROM 'chat_uuid_v7()' THEN
        ALTER TABLE messages ALTER COLUMN id SET DEFAULT chat_uuid_v7();
    END IF;
END
$$;
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
-- Databases from before attachments get the column; the default fills existing rows
-- without rewriting the table.
ALTER TABLE messages ADD COLUMN IF NOT EXISTS attachments jsonb NOT NULL DEFAULT '[]';
-- The idempotency key: a repeated send with the same client_id finds the original. Partial,
-- so a send without a client_id pays for no entry.
CREATE UNIQUE INDEX IF NOT EXISTS messages_client_id ON messages (conversation_id, sender_id, client_id)
    WHERE client_id IS NOT NULL;
-- The same key for system messages, whose NULL sender the index above cannot tell apart.
CREATE UNIQUE INDEX IF NOT EXISTS messages_system_client_id ON messages (conversation_id, client_id)
    WHERE client_id IS NOT NULL AND sender_id IS NULL;

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
        CONSTRAINT events_type_check
        CHECK (type IN ('message', 'message_updated', 'message_deleted', 'read', 'conversation',
                        'member_added', 'member_removed')),
    message_id      uuid,
    -- The reader of a read event; the member added or removed by a member event; the one
    -- recipient of a conversation event logged when a member is added later (NULL: all).
    user_id         text,
    seq             bigint,
    -- Who added or removed the member: the member itself when it left, NULL for the server.
    actor           text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tx, id)
);
CREATE INDEX IF NOT EXISTS events_conversation ON events (conversation_id, tx, id);
-- Databases from schema version 2 get the member events. The check is replaced only when
-- it lacks them: replacing it scans the whole log.
ALTER TABLE events ADD COLUMN IF NOT EXISTS actor text;
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint
                   WHERE conrelid = 'events'::regclass AND conname = 'events_type_check'
                     AND pg_get_constraintdef(oid) LIKE '%member_removed%') THEN
        ALTER TABLE events DROP CONSTRAINT IF EXISTS events_type_check;
        ALTER TABLE events ADD CONSTRAINT events_type_check
            CHECK (type IN ('message', 'message_updated', 'message_deleted', 'read', 'conversation',
                            'member_added', 'member_removed'));
    END IF;
END
$$;
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
    lm.deleted_at AS lm_deleted_at, lm.kind AS lm_kind, lm.attachments AS lm_attachments
FROM members m
JOIN conversations c ON c.id = m.conversation_id
LEFT JOIN messages lm ON lm.conversation_id = c.id AND lm.seq = c.last_seq AND lm.seq > m.history_seq;

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
