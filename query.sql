-- Every query chatd runs. `sqlc generate` turns this file into db/query.sql.go.


-- name: UpsertUser :exec
-- A signed-in user: create it, or record a changed display name. A NULL name (token
-- without a name claim) never erases a known one. A user already stored as it is costs a
-- read only: no row lock, no transaction id, no WAL flush (ON CONFLICT would lock the row
-- even to change nothing, and a burst of one user's first requests would queue on it).
INSERT INTO users (id, name)
SELECT @id, sqlc.narg(name)
WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.id = @id
                  AND (sqlc.narg(name)::text IS NULL OR u.name IS NOT DISTINCT FROM sqlc.narg(name)::text))
ON CONFLICT (id) DO UPDATE SET name = COALESCE(EXCLUDED.name, users.name)
WHERE users.name IS DISTINCT FROM COALESCE(EXCLUDED.name, users.name);

-- name: EnsureUsers :exec
-- Users named as participants before they ever called the service.
INSERT INTO users (id) SELECT unnest(@ids::text[]) ON CONFLICT DO NOTHING;


-- name: CreateDirectConversation :one
-- Returns no row when the pair already has its conversation.
INSERT INTO conversations (kind, direct_a, direct_b, title, metadata)
VALUES ('direct', @a, @b, sqlc.narg(title), (@metadata::text)::jsonb)
ON CONFLICT (direct_a, direct_b) WHERE kind = 'direct' AND external_id IS NULL DO NOTHING
RETURNING id;

-- name: GetDirectConversation :one
SELECT id FROM conversations WHERE kind = 'direct' AND direct_a = @a AND direct_b = @b AND external_id IS NULL;

-- name: CreateGroupConversation :one
INSERT INTO conversations (kind, title) VALUES ('group', sqlc.narg(title)) RETURNING id;

-- name: CreateServerConversation :one
-- A conversation the application's backend opens. Returns no row when external_id is
-- taken: ON CONFLICT waits for a concurrent creator with the same external_id to commit,
-- so of any number of concurrent creations exactly one inserts.
-- metadata travels as text: through PgBouncer pgx cannot learn a parameter's type, and
-- would send bytes as bytea, which jsonb refuses.
INSERT INTO conversations (kind, title, direct_a, direct_b, external_id, metadata, history)
VALUES (@kind, sqlc.narg(title), sqlc.narg(direct_a), sqlc.narg(direct_b), sqlc.narg(external_id), (@metadata::text)::jsonb, @history)
ON CONFLICT (external_id) WHERE external_id IS NOT NULL DO NOTHING
RETURNING id;

-- name: ConversationByExternalID :one
SELECT id FROM conversations WHERE external_id = @external_id;

-- name: ServerConversation :one
-- One conversation as the application's backend sees it: the columns of
-- member_conversations, read by no member (nothing read, nothing unread).
SELECT ''::text AS member_id, c.id, c.kind, c.title, c.created_at, c.updated_at, c.activity_at,
    c.external_id, c.metadata, c.closed_at, 0::bigint AS last_read_seq, 0::bigint AS unread_count,
    lm.id AS lm_id, lm.seq AS lm_seq, lm.sender_id AS lm_sender_id, lm.body AS lm_body,
    lm.client_id AS lm_client_id, lm.created_at AS lm_created_at, lm.edited_at AS lm_edited_at,
    lm.deleted_at AS lm_deleted_at, lm.kind AS lm_kind, lm.attachments AS lm_attachments
FROM conversations c
LEFT JOIN messages lm ON lm.conversation_id = c.id AND lm.seq = c.last_seq
WHERE c.id = @conversation_id;

-- name: CloseConversation :one
-- Closes a conversation once; closing it again changes nothing. No row for an unknown id.
-- It takes the conversation's send lock (see LockConversations) before its row: a batch of
-- sends that passed its closed check commits before the close does.
UPDATE conversations
SET closed_at = COALESCE(closed_at, now()), updated_at = CASE WHEN closed_at IS NULL THEN now() ELSE updated_at END
WHERE (SELECT true FROM pg_advisory_xact_lock(1667785076, hashtext(conversations.id::text)))
  AND id = @conversation_id
RETURNING id;

-- name: SetNotifyWebhook :exec
-- Whether the notification webhook may write to a user; a user not seen yet is created
-- with the setting, like a participant named before it signs in.
INSERT INTO users (id, notify_webhook) VALUES (@id, @notify_webhook)
ON CONFLICT (id) DO UPDATE SET notify_webhook = EXCLUDED.notify_webhook;

-- name: AddMembers :exec
-- The creator has taken part from the start; the others once they send or read.
INSERT INTO members (conversation_id, user_id, took_part)
SELECT @conversation_id, u, u = @creator_id::text FROM unnest(@user_ids::text[]) u;

-- name: ConversationKind :one
SELECT kind FROM conversations WHERE id = @conversation_id;

-- name: AddConversationMembers :many
-- Adds users to a conversation after its creation (after LockConversations, in the same
-- transaction) and logs, for each who was not a member, a conversation event addressed to
-- that user alone (user_id set: the conversation object it was added to) and member_added
-- for everyone; returns those users. A new
-- member has nothing unread from before it joined; with history 'joined' (the add's, else
-- the conversation's) it sees no message from before either. See member_history.
WITH conv AS (
    SELECT c.id, c.last_seq, COALESCE(sqlc.narg(history)::text, c.history) AS history
    FROM conversations c WHERE c.id = @conversation_id
), ins AS (
    INSERT INTO members (conversation_id, user_id, last_read_seq, history_seq)
    SELECT conv.id, u, conv.last_seq, CASE WHEN conv.history = 'joined' THEN conv.last_seq ELSE 0 END
    FROM conv, unnest(@user_ids::text[]) AS u
    ON CONFLICT (conversation_id, user_id) DO NOTHING
    RETURNING conversation_id, user_id
), ev AS (
    INSERT INTO events (conversation_id, type, user_id, actor)
    SELECT a.conversation_id, a.type, a.user_id, NULL
    FROM (SELECT conversation_id, 'conversation' AS type, user_id, 1 AS o FROM ins
          UNION ALL
          SELECT conversation_id, 'member_added', user_id, 2 FROM ins) a
    ORDER BY a.user_id, a.o
)
SELECT user_id FROM ins ORDER BY user_id;

-- name: CountMembers :one
SELECT count(*) FROM members WHERE conversation_id = @conversation_id;

-- name: RemoveMember :one
-- Removes a member (after LockConversations, in the same transaction): its open range
-- becomes a closed one in member_history, ending at this transaction, whose member_removed
-- event is the last of the conversation the user receives. No row when it was no member.
WITH gone AS (
    DELETE FROM members m WHERE m.conversation_id = @conversation_id AND m.user_id = @user_id
    RETURNING m.conversation_id, m.user_id, m.joined_tx, m.history_seq
), hist AS (
    INSERT INTO member_history (conversation_id, user_id, joined_tx, left_tx, history_seq)
    SELECT conversation_id, user_id, joined_tx, pg_current_xact_id(), history_seq FROM gone
), ev AS (
    INSERT INTO events (conversation_id, type, user_id, actor)
    SELECT conversation_id, 'member_removed', user_id, sqlc.narg(actor)::text FROM gone
)
SELECT user_id FROM gone;

-- name: MemberHistorySeq :one
-- The seq after which the caller sees messages; no row when it is not a member.
SELECT history_seq FROM members WHERE conversation_id = @conversation_id AND user_id = @user_id;

-- name: InsertConversationEvent :exec
-- The creation of a conversation, for all its members (user_id NULL).
INSERT INTO events (conversation_id, type) VALUES (@conversation_id, 'conversation');

-- name: IsMember :one
SELECT EXISTS (SELECT 1 FROM members WHERE conversation_id = @conversation_id AND user_id = @user_id);

-- name: ConversationMembers :many
-- Who receives a conversation's ephemeral events (typing) on another instance.
SELECT user_id FROM members WHERE conversation_id = @conversation_id ORDER BY user_id;

-- name: ListMembers :many
-- The members of a conversation, or nothing at all when the caller is not one of them.
SELECT m.user_id FROM members m
WHERE m.conversation_id = @conversation_id
  AND EXISTS (SELECT 1 FROM members c WHERE c.conversation_id = @conversation_id AND c.user_id = @caller_id)
ORDER BY m.user_id;

-- name: GetConversation :one
-- One conversation as the caller sees it; no row when the caller is not a participant.
SELECT * FROM member_conversations WHERE id = @conversation_id AND member_id = @user_id;

-- name: ListConversations :many
-- The caller's conversations, most recently active first, after the keyset cursor
-- (activity_at, id) of the previous page's last row.
SELECT * FROM member_conversations
WHERE member_id = @user_id
  AND (sqlc.narg(before_activity)::timestamptz IS NULL
       OR (activity_at, id) < (sqlc.narg(before_activity)::timestamptz, @before_id::uuid))
ORDER BY activity_at DESC, id DESC
LIMIT @row_limit;

-- name: ConversationsByID :many
-- The shared fields of conversations, for rendering conversation events in one query.
SELECT id, kind, title, created_at, external_id, metadata, closed_at FROM conversations WHERE id = ANY(@ids::uuid[]);

-- name: ListParticipants :many
SELECT m.conversation_id, u.id, u.name, m.took_part
FROM members m JOIN users u ON u.id = m.user_id
WHERE m.conversation_id = ANY(@conversation_ids::uuid[])
ORDER BY m.conversation_id, m.joined_at, u.id;


-- name: LockConversations :exec
-- The first statement of a batch of sends (db/sender.go): each conversation's advisory lock,
-- in one fixed order so that two batches sharing conversations never deadlock. It writes
-- nothing, so the transaction takes its id only in SendMessages, after every lock is held:
-- under the lock, transaction ids of one conversation's messages follow their seq, and the
-- event log (ordered by transaction id) lists seq 4 before seq 5. SendMessages runs next
-- with a snapshot of its own (READ COMMITTED), which sees every message committed by the
-- lock's earlier holders, so its client_id check cannot miss a concurrent duplicate.
SELECT pg_advisory_xact_lock(1667785076, k)
FROM (SELECT DISTINCT hashtext(c::text) AS k FROM unnest(@conversation_ids::uuid[]) AS c ORDER BY k) AS keys;

-- name: SendMessages :many
-- Sends a batch of messages, any conversations, in one statement after LockConversations.
-- Attachments come as text (no array at all, or a missing entry: none), so that any
-- statement mode encodes them alike. Each input row (ord = its position, from 1) is sent
-- when its sender is a participant and its client_id (empty: none) is neither used in the
-- conversation by that sender nor by an earlier row of the batch; the rows sent come back
-- with their ord, the others do not (the caller tells a repeat, an outsider and a closed
-- conversation apart by looking them up). A conversation's
-- last_seq moves once by the number of its rows, which take the seqs after it in ord order:
-- gap-free, and in commit order because the conversation's lock is held to commit. The
-- sender's read position moves past its own message, and each message logs one event,
-- inserted in seq order so that event ids follow seq within the transaction.
WITH input AS (
    SELECT (@conversation_ids::uuid[])[i]::uuid AS conversation_id,
        (@sender_ids::text[])[i]::text AS sender_id, (@bodies::text[])[i]::text AS body,
        NULLIF((@client_ids::text[])[i], '')::text AS client_id,
        COALESCE((@attachments::text[])[i]::jsonb, '[]') AS attachments, i::bigint AS ord
    FROM generate_series(1, cardinality(@conversation_ids::uuid[])) AS i
), ok AS (
    SELECT i.*, row_number() OVER (PARTITION BY i.conversation_id ORDER BY i.ord) AS n
    FROM input i
    WHERE EXISTS (SELECT 1 FROM members s
                  WHERE s.conversation_id = i.conversation_id AND s.user_id = i.sender_id)
      -- A closed conversation takes no message; CloseConversation takes the same lock, so
      -- a send is wholly before a close or sees it.
      AND NOT EXISTS (SELECT 1 FROM conversations z WHERE z.id = i.conversation_id AND z.closed_at IS NOT NULL)
      AND (i.client_id IS NULL OR (
          NOT EXISTS (SELECT 1 FROM messages d
                      WHERE d.conversation_id = i.conversation_id AND d.sender_id = i.sender_id
                        AND d.client_id = i.client_id)
          AND NOT EXISTS (SELECT 1 FROM input j
                          WHERE j.conversation_id = i.conversation_id AND j.sender_id = i.sender_id
                            AND j.client_id = i.client_id AND j.ord < i.ord)))
), conv AS (
    UPDATE conversations c
    SET last_seq = c.last_seq + k.sent, activity_at = now(), updated_at = now()
    FROM (SELECT conversation_id, count(*) AS sent FROM ok GROUP BY conversation_id) AS k
    WHERE c.id = k.conversation_id
    RETURNING c.id, c.last_seq - k.sent AS base
), msg AS (
    INSERT INTO messages (conversation_id, seq, sender_id, body, client_id, attachments)
    SELECT ok.conversation_id, conv.base + ok.n, ok.sender_id, ok.body, ok.client_id, ok.attachments
    FROM ok JOIN conv ON conv.id = ok.conversation_id
    RETURNING *
), rd AS (
    UPDATE members SET last_read_seq = GREATEST(members.last_read_seq, r.seq), took_part = true
    FROM (SELECT conversation_id, sender_id, max(seq) AS seq FROM msg GROUP BY conversation_id, sender_id) AS r
    WHERE members.conversation_id = r.conversation_id AND members.user_id = r.sender_id
), ev AS (
    INSERT INTO events (conversation_id, type, message_id)
    SELECT conversation_id, 'message', id FROM msg ORDER BY conversation_id, seq
)
SELECT ok.ord, msg.id, msg.conversation_id, msg.seq, msg.sender_id, msg.body, msg.client_id,
    msg.created_at, msg.edited_at, msg.deleted_at, msg.kind, msg.attachments
FROM msg
JOIN conv ON conv.id = msg.conversation_id
JOIN ok ON ok.conversation_id = msg.conversation_id AND conv.base + ok.n = msg.seq;

-- name: SendRefusal :one
-- Why SendMessages or SendSystemMessage wrote nothing: whether the conversation exists,
-- whether the sender (NULL: the server) may see it, and whether it is closed.
SELECT EXISTS (SELECT 1 FROM conversations c WHERE c.id = @conversation_id) AS found,
    (sqlc.narg(sender_id)::text IS NULL OR EXISTS (SELECT 1 FROM members m
        WHERE m.conversation_id = @conversation_id AND m.user_id = sqlc.narg(sender_id)::text))::boolean AS member,
    EXISTS (SELECT 1 FROM conversations c WHERE c.id = @conversation_id AND c.closed_at IS NOT NULL) AS closed;

-- name: SendSystemMessage :one
-- A system message: a send without a sender, posted by the application's backend into
-- any open conversation. No participant's read position or took_part changes: a system
-- message is unread for every participant and says nothing of anyone's presence. No row
-- when the conversation is unknown or closed, or the client_id was used already.
WITH conv AS (
    UPDATE conversations c
    SET last_seq = c.last_seq + 1, activity_at = now(), updated_at = now()
    WHERE (SELECT true FROM pg_advisory_xact_lock(1667785076, hashtext(c.id::text)))
      AND c.id = @conversation_id AND c.closed_at IS NULL
      AND (sqlc.narg(client_id)::text IS NULL OR NOT EXISTS (
          SELECT 1 FROM messages d
          WHERE d.conversation_id = @conversation_id AND d.sender_id IS NULL
            AND d.client_id = sqlc.narg(client_id)::text))
    RETURNING c.id, c.last_seq
), msg AS (
    INSERT INTO messages (conversation_id, seq, sender_id, body, client_id, kind, attachments)
    SELECT conv.id, conv.last_seq, NULL, @body, sqlc.narg(client_id)::text, 'system', CAST(@attachments::text AS jsonb) FROM conv
    RETURNING *
), ev AS (
    INSERT INTO events (conversation_id, type, message_id)
    SELECT msg.conversation_id, 'message', msg.id FROM msg
)
SELECT id, conversation_id, seq, sender_id, body, client_id, created_at, edited_at, deleted_at, kind, attachments
FROM msg;

-- name: GetSystemMessageByClientID :one
SELECT * FROM messages
WHERE conversation_id = @conversation_id AND sender_id IS NULL AND client_id = @client_id;

-- name: GetMessageByClientID :one
SELECT * FROM messages
WHERE conversation_id = @conversation_id AND sender_id = @sender_id AND client_id = @client_id;

-- name: GetMessage :one
-- A message as seen by the caller; no row when the caller is not a participant.
SELECT x.* FROM messages x
JOIN members m ON m.conversation_id = x.conversation_id AND m.user_id = @user_id
WHERE x.conversation_id = @conversation_id AND x.id = @id;

-- name: ListLatestMessages :many
SELECT * FROM messages WHERE conversation_id = @conversation_id AND seq > @history_seq
ORDER BY seq DESC LIMIT @row_limit;

-- name: ListMessagesBefore :many
SELECT * FROM messages WHERE conversation_id = @conversation_id AND seq < @before_seq AND seq > @history_seq
ORDER BY seq DESC LIMIT @row_limit;

-- name: ListMessagesAfter :many
SELECT * FROM messages WHERE conversation_id = @conversation_id AND seq > GREATEST(@after_seq::bigint, @history_seq::bigint)
ORDER BY seq ASC LIMIT @row_limit;

-- name: ChangeMessage :one
-- Edits (erase false: the new body, edited_at) or soft-deletes (erase true: the body and
-- the attachments erased, deleted_at) the sender's own message, unless it is deleted
-- already, and logs message_updated or message_deleted; no row otherwise. The row and its
-- seq stay.
WITH u AS (
    UPDATE messages SET
        body = CASE WHEN @erase::boolean THEN '' ELSE @body::text END,
        edited_at = CASE WHEN @erase::boolean THEN messages.edited_at ELSE now() END,
        deleted_at = CASE WHEN @erase::boolean THEN now() END,
        attachments = CASE WHEN @erase::boolean THEN '[]'::jsonb ELSE messages.attachments END
    WHERE messages.conversation_id = @conversation_id AND messages.id = @id
      AND messages.sender_id = @sender_id::text AND messages.deleted_at IS NULL
    RETURNING *
), ev AS (
    INSERT INTO events (conversation_id, type, message_id)
    SELECT u.conversation_id, CASE WHEN @erase::boolean THEN 'message_deleted' ELSE 'message_updated' END, u.id
    FROM u
)
SELECT id, conversation_id, seq, sender_id, body, client_id, created_at, edited_at, deleted_at, kind, attachments
FROM u;


-- name: MarkRead :one
-- Moves the caller's read position forward (never back, never past the last message) and
-- logs a read event; no row when nothing moved or the caller is not a participant.
WITH u AS (
    UPDATE members m SET last_read_seq = LEAST(@seq::bigint, c.last_seq), took_part = true
    FROM conversations c
    WHERE c.id = m.conversation_id AND m.conversation_id = @conversation_id
      AND m.user_id = @user_id AND m.last_read_seq < LEAST(@seq::bigint, c.last_seq)
    RETURNING m.conversation_id, m.user_id, m.last_read_seq
), ev AS (
    INSERT INTO events (conversation_id, type, user_id, seq)
    SELECT u.conversation_id, 'read', u.user_id, u.last_read_seq FROM u
)
SELECT last_read_seq FROM u;

-- name: UnreadCounts :many
-- Computed from stored state each time: messages from others (system messages included),
-- not deleted, after the caller's read position. The count per membership is a lateral
-- index range over the unread tail: a join with IS DISTINCT FROM would let the planner
-- scan every message instead.
SELECT m.conversation_id, u.unread_count
FROM members m
CROSS JOIN LATERAL (
    SELECT count(*) AS unread_count FROM messages x
    WHERE x.conversation_id = m.conversation_id AND x.seq > m.last_read_seq
      AND x.sender_id IS DISTINCT FROM m.user_id AND x.deleted_at IS NULL
) u
WHERE m.user_id = @user_id AND u.unread_count > 0
ORDER BY m.conversation_id;


-- name: CreateTicket :exec
INSERT INTO tickets (hash, user_id, token_expires, expires_at)
VALUES (@hash, @user_id, @token_expires, @expires_at);

-- name: PeekTicket :one
-- Whose ticket this is, without using it up: the stream uses it up only once it is sure
-- to open, so a stream refused for a cap or a rate keeps its ticket for the retry.
SELECT user_id, token_expires FROM tickets WHERE hash = @hash AND expires_at > now();

-- name: ConsumeTicket :one
-- Single use: the row is gone once read, on whichever instance reads it first.
DELETE FROM tickets WHERE hash = @hash AND expires_at > now()
RETURNING user_id, token_expires;

-- name: PruneTickets :exec
DELETE FROM tickets WHERE expires_at <= now();


-- name: ReadEvents :many
-- The next events after a cursor, for one instance's fan-out. Only rows written by
-- transactions older than every running one are read (the fence, see schema.sql).
-- Recipients are the users whose membership range holds the event (see member_history in
-- schema.sql) and who may see its message (history_seq).
SELECT e.tx, e.id, e.conversation_id, e.type, e.user_id, e.seq, e.created_at, e.actor,
    x.id AS m_id, x.seq AS m_seq, x.sender_id AS m_sender_id, x.body AS m_body,
    x.client_id AS m_client_id, x.created_at AS m_created_at, x.edited_at AS m_edited_at,
    x.deleted_at AS m_deleted_at, x.kind AS m_kind, x.attachments AS m_attachments,
    CASE WHEN e.type = 'conversation' AND e.user_id IS NOT NULL THEN ARRAY[e.user_id]
    ELSE ARRAY(SELECT r.user_id FROM members r
          WHERE r.conversation_id = e.conversation_id AND r.joined_tx <= e.tx
            AND (x.seq IS NULL OR x.seq > r.history_seq)
          UNION ALL -- a user's ranges in a conversation never overlap: nothing to deduplicate
          SELECT h.user_id FROM member_history h
          WHERE h.conversation_id = e.conversation_id AND h.joined_tx <= e.tx AND e.tx <= h.left_tx
            AND (x.seq IS NULL OR x.seq > h.history_seq)
          ORDER BY 1) END::text[] AS recipients
FROM events e
LEFT JOIN messages x ON x.id = e.message_id
WHERE (e.tx, e.id) > (@after_tx::xid8, @after_id::bigint)
  AND e.tx < pg_snapshot_xmin(pg_current_snapshot())
ORDER BY e.tx, e.id
LIMIT @row_limit;

-- name: BackfillEvents :many
-- One user's events in the cursor range (after, upto], for a stream or poll resuming from
-- a cursor before the hub's head. upto is a position the reader already read below the
-- fence, so the range is final. The lateral join walks each of the user's membership
-- ranges, open (members) and closed (member_history, see schema.sql), through
-- events_conversation, keeping the events inside the range that the user may see: the
-- planner must not scan the whole window of everyone's events to find this user's few.
-- Its columns are ReadEvents' (recipients empty: the stream's user is the recipient), so
-- both render through one builder.
SELECT e.tx, e.id, e.conversation_id, e.type, e.user_id, e.seq, e.created_at, e.actor,
    e.m_id, e.m_seq, e.m_sender_id, e.m_body, e.m_client_id, e.m_created_at, e.m_edited_at,
    e.m_deleted_at, e.m_kind, e.m_attachments, '{}'::text[] AS recipients
FROM (
    SELECT m.conversation_id, m.joined_tx, NULL::xid8 AS left_tx, m.history_seq
    FROM members m WHERE m.user_id = @user_id
    UNION ALL
    SELECT h.conversation_id, h.joined_tx, h.left_tx, h.history_seq
    FROM member_history h WHERE h.user_id = @user_id AND h.left_tx >= @after_tx::xid8
) r
CROSS JOIN LATERAL (
    SELECT v.tx, v.id, v.conversation_id, v.type, v.user_id, v.seq, v.created_at, v.actor,
        x.id AS m_id, x.seq AS m_seq, x.sender_id AS m_sender_id, x.body AS m_body,
        x.client_id AS m_client_id, x.created_at AS m_created_at, x.edited_at AS m_edited_at,
        x.deleted_at AS m_deleted_at, x.kind AS m_kind, x.attachments AS m_attachments
    FROM events v
    LEFT JOIN messages x ON x.id = v.message_id
    WHERE v.conversation_id = r.conversation_id
      AND (v.tx, v.id) > (@after_tx::xid8, @after_id::bigint)
      AND (v.tx, v.id) <= (@upto_tx::xid8, @upto_id::bigint)
      AND v.tx >= r.joined_tx AND (r.left_tx IS NULL OR v.tx <= r.left_tx)
      AND (x.seq IS NULL OR x.seq > r.history_seq)
      AND (v.type <> 'conversation' OR v.user_id IS NULL OR v.user_id = @user_id)
    ORDER BY v.tx, v.id
    LIMIT @row_limit
) e
ORDER BY e.tx, e.id
LIMIT @row_limit;

-- name: EventHead :one
-- The newest final position: every event at or before it is committed and visible. No row
-- means the log is empty (or pruned empty) and the head is the floor.
SELECT e.tx, e.id FROM events e
WHERE e.tx < pg_snapshot_xmin(pg_current_snapshot())
ORDER BY e.tx DESC, e.id DESC LIMIT 1;

-- name: EventFloor :one
SELECT tx, id FROM event_floor;

-- name: CursorStatus :one
-- What a resume needs to know of a cursor, in one round trip: the retention floor, and
-- whether the cursor names an event that exists.
SELECT f.tx AS floor_tx, f.id AS floor_id,
    EXISTS (SELECT 1 FROM events e WHERE e.tx = @tx AND e.id = @id) AS found
FROM event_floor f;

-- name: PruneEvents :one
-- Deletes events older than the retention and records the newest deleted position, so a
-- cursor behind it is recognised as expired.
WITH last AS (
    SELECT e.tx, e.id FROM events e
    WHERE e.created_at < @older_than AND e.tx < pg_snapshot_xmin(pg_current_snapshot())
    ORDER BY e.tx DESC, e.id DESC LIMIT 1
), gone AS (
    DELETE FROM events e USING last WHERE (e.tx, e.id) <= (last.tx, last.id)
    RETURNING e.tx
), fl AS (
    UPDATE event_floor SET tx = last.tx, id = last.id FROM last
    WHERE EXISTS (SELECT 1 FROM gone)
), hist AS (
    -- A closed membership range that ended before the floor holds no event any more.
    DELETE FROM member_history h USING last WHERE h.left_tx < last.tx
)
SELECT count(*) FROM gone;

-- name: Notify :exec
-- Doorbells and ephemeral events between instances, each in a transaction of its own (never
-- in a message's commit: NOTIFY serialises committers, DESIGN-NOTES.md §1). A doorbell
-- carries no content and a lost one only delays delivery to the safety poll, so its commit
-- need not wait for the WAL flush.
SELECT set_config('synchronous_commit', 'off', true), pg_notify(@channel::text, @payload::text);

-- name: NotifyAll :exec
-- The leader's forwards of one read of the log (events/forward.go), every payload in one
-- transaction: one commit, and one turn of the notify lock, however many it takes.
SELECT set_config('synchronous_commit', 'off', true), pg_notify(@channel::text, p)
FROM unnest(@payloads::text[]) AS p;

-- name: TryLeadLog :one
-- The reader lock: its holder reads the log for every instance and forwards what it read
-- (events/forward.go). A session lock, taken on the listener's own connection, so it is
-- let go when that connection ends. (Class "read"; the class keeps it apart from the
-- per-conversation and per-user locks, whose keys are hashes.)
SELECT pg_try_advisory_lock(1919246692, 0);

-- name: HandOverLog :exec
-- A leader that stops lets the reader lock go and tells the followers in the same
-- statement: the unlock takes effect at once, the notification at its commit, so a
-- follower that tries on hearing it finds the lock free.
SELECT pg_advisory_unlock(1919246692, 0), pg_notify(@channel::text, @payload::text);

-- name: TouchInstance :execrows
-- The instance's heartbeat; no row means other instances took it for dead and removed it.
UPDATE instances SET heartbeat_at = now() WHERE id = @id;

-- name: InsertInstance :exec
INSERT INTO instances (id) VALUES (@id) ON CONFLICT (id) DO UPDATE SET heartbeat_at = now();

-- name: ExpireInstances :many
-- Removes the instances that stopped beating (they died) together with their presence
-- rows, in one statement: an instance that was only slow finds its row gone on its next
-- beat, and re-registers after this commits. Returns each user who lost a row, with the
-- dead instance's last beat.
WITH dead AS (
    DELETE FROM instances WHERE heartbeat_at < now() - make_interval(secs => @stale_seconds::float8)
    RETURNING id, heartbeat_at
), gone AS (
    DELETE FROM presence p USING dead WHERE p.instance_id = dead.id
    RETURNING p.user_id, p.instance_id
)
SELECT g.user_id, d.heartbeat_at FROM gone g JOIN dead d ON d.id = g.instance_id;

-- name: MarkGone :many
-- Of the users, those now online nowhere get last_seen_at and are returned (to announce).
UPDATE users u SET last_seen_at = @seen_at
WHERE u.id = ANY(@user_ids::text[])
  AND NOT EXISTS (
      SELECT 1 FROM presence p JOIN instances i ON i.id = p.instance_id
      WHERE p.user_id = u.id
        AND i.heartbeat_at > now() - make_interval(secs => @stale_seconds::float8))
RETURNING u.id;

-- name: LeaveInstance :exec
-- A clean shutdown: the instance and its presence rows go at once.
WITH p AS (DELETE FROM presence WHERE instance_id = @id)
DELETE FROM instances WHERE id = @id;

-- name: LockPresence :exec
-- Serialises presence changes of the same users across instances, in a transaction before
-- SetOnline or SetOffline: each must see the others' committed rows to know whether it is
-- a user's first stream anywhere, or the last. Callers pass the ids sorted, so concurrent
-- batches lock in one order.
SELECT count(pg_advisory_xact_lock(1886545266, hashtext(u.id)))
FROM unnest(@user_ids::text[]) WITH ORDINALITY AS u(id, n);

-- name: SetOnline :many
-- Records that the users have a stream on this instance; returns those who were not online
-- through another instance (their first stream anywhere, worth announcing).
WITH ins AS (
    INSERT INTO presence (user_id, instance_id)
    SELECT unnest(@user_ids::text[]), @instance_id
    ON CONFLICT DO NOTHING
)
SELECT u.id::text FROM unnest(@user_ids::text[]) AS u(id)
WHERE NOT EXISTS (
    SELECT 1 FROM presence p JOIN instances i ON i.id = p.instance_id
    WHERE p.user_id = u.id AND p.instance_id <> @instance_id
      AND i.heartbeat_at > now() - make_interval(secs => @stale_seconds::float8));

-- name: SetOffline :many
-- Records that the users' last streams on this instance closed; returns those who are not
-- online through another instance either (gone everywhere, worth announcing).
WITH del AS (
    DELETE FROM presence WHERE instance_id = @instance_id AND user_id = ANY(@user_ids::text[])
), seen AS (
    UPDATE users SET last_seen_at = now() WHERE id = ANY(@user_ids::text[])
)
SELECT u.id::text FROM unnest(@user_ids::text[]) AS u(id)
WHERE NOT EXISTS (
    SELECT 1 FROM presence p JOIN instances i ON i.id = p.instance_id
    WHERE p.user_id = u.id AND p.instance_id <> @instance_id
      AND i.heartbeat_at > now() - make_interval(secs => @stale_seconds::float8));

-- name: PresenceOf :many
-- Presence of the caller and of the given users who took part in a conversation with the
-- caller (see members.took_part).
SELECT u.id, u.last_seen_at,
    EXISTS (SELECT 1 FROM presence p JOIN instances i ON i.id = p.instance_id
            WHERE p.user_id = u.id
              AND i.heartbeat_at > now() - make_interval(secs => @stale_seconds::float8)) AS online
FROM users u
WHERE u.id = ANY(@user_ids::text[])
  AND (u.id = @caller_id OR EXISTS (
      SELECT 1 FROM members a JOIN members b ON b.conversation_id = a.conversation_id
      WHERE a.user_id = @caller_id AND b.user_id = u.id AND b.took_part))
ORDER BY u.id;

-- name: OnlineAmong :many
SELECT DISTINCT p.user_id FROM presence p JOIN instances i ON i.id = p.instance_id
WHERE p.user_id = ANY(@user_ids::text[])
  AND i.heartbeat_at > now() - make_interval(secs => @stale_seconds::float8);

-- name: Contacts :many
-- The audience of each user's presence events: everyone in a conversation the user took
-- part in.
SELECT DISTINCT a.user_id, b.user_id AS contact
FROM members a JOIN members b ON b.conversation_id = a.conversation_id
WHERE a.user_id = ANY(@user_ids::text[]) AND a.took_part AND b.user_id <> a.user_id
ORDER BY a.user_id, contact;

-- name: OldestWriteTransaction :one
-- Age in seconds of the oldest transaction holding a transaction id anywhere in the
-- cluster: the event-log fence waits for it, so this is how late delivery can be.
-- Measured from clock_timestamp(), not now(): now() is when this statement's own
-- transaction began, and a transaction that began after it would give a negative age.
SELECT GREATEST(COALESCE(EXTRACT(epoch FROM clock_timestamp() - min(xact_start)), 0), 0)::float8 AS age
FROM pg_catalog.pg_stat_activity WHERE backend_xid IS NOT NULL;


-- name: SearchQueryTree :one
-- What the search text means to the index: empty when it holds no word at all (only stop
-- words or punctuation: nothing can match), 'T' when it has no word a match must contain
-- (only negations such as "-word", which would read the whole index).
SELECT querytree(chat_search_query(@q::text))::text AS tree;

-- name: SearchMessages :many
-- The caller's messages that match q, newest first after the keyset cursor (created_at, id),
-- in the caller's conversations (or the one given, if the caller is in it). The inner
-- query ANDs two bitmaps: the GIN index's matches (messages_search: same expression, same
-- partial predicate) and the caller's messages by conversation (an array, not IN: with a
-- semi-join the planner repeated the GIN scan once per conversation, 400 ms for a common
-- word); only rows in both are read. The snippet is made only for the page's rows. U+0001 and U+0002
-- mark the matches (the API turns them into <mark> after escaping the text), so any in
-- the body are removed first.
SELECT p.id, p.conversation_id, p.seq, p.sender_id, p.body, p.client_id, p.created_at,
    p.edited_at, p.deleted_at, p.kind, p.attachments,
    ts_headline(chat_search_config(), translate(p.body, E'\x01\x02', ''), chat_search_query(@q::text),
        'StartSel=' || chr(1) || ', StopSel=' || chr(2) || ', MaxWords=24, MinWords=8')::text AS snippet
FROM (
    SELECT x.* FROM messages x
    WHERE chat_search_vector(x.body) @@ chat_search_query(@q::text)
      AND x.deleted_at IS NULL
      AND x.conversation_id = ANY(ARRAY(
          SELECT m.conversation_id FROM members m
          WHERE m.user_id = @user_id
            AND (sqlc.narg(conversation_id)::uuid IS NULL OR m.conversation_id = sqlc.narg(conversation_id)::uuid)))
      AND (sqlc.narg(before_at)::timestamptz IS NULL
           OR (x.created_at, x.id) < (sqlc.narg(before_at)::timestamptz, @before_id::uuid))
      -- A member added with history 'joined' finds nothing from before it joined.
      AND x.seq > (SELECT h.history_seq FROM members h
                   WHERE h.conversation_id = x.conversation_id AND h.user_id = @user_id)
    ORDER BY x.created_at DESC, x.id DESC
    LIMIT @row_limit
) p
ORDER BY p.created_at DESC, p.id DESC;
-- Notification webhooks (notify/).

-- name: NotifyCursorInit :exec
-- The notifier's first start begins at the log's head: what was sent before webhooks were
-- configured is not announced.
INSERT INTO notify_cursor (tx, id)
SELECT COALESCE(h.tx, f.tx), COALESCE(h.id, f.id) FROM event_floor f
LEFT JOIN LATERAL (
    SELECT e.tx, e.id FROM events e
    WHERE e.tx < pg_snapshot_xmin(pg_current_snapshot())
    ORDER BY e.tx DESC, e.id DESC LIMIT 1) h ON true
ON CONFLICT DO NOTHING;

-- name: NotifyScanLock :one
-- One notifier at a time follows the log. A transaction-level advisory lock, taken before
-- anything is written: a scan that finds nothing new never gets a transaction id, so it
-- never holds back the event-log fence of the instances' readers.
SELECT pg_try_advisory_xact_lock(1852797812, 0);

-- name: NotifyCursor :one
SELECT tx, id FROM notify_cursor;

-- name: NotifyScan :one
-- One step of the notifier along the event log, from its cursor, below the fence (see
-- ReadEvents): the recipients of the messages in the next batch of events who accept
-- webhooks become pending, those not pending before are returned (each gets a check
-- scheduled in the same transaction), and the cursor moves past the batch. No row when no
-- new event is final.
WITH batch AS (
    SELECT e.tx, e.id, e.conversation_id, e.type, e.message_id FROM events e
    WHERE (e.tx, e.id) > (@after_tx::xid8, @after_id::bigint)
      AND e.tx < pg_snapshot_xmin(pg_current_snapshot())
    ORDER BY e.tx, e.id
    LIMIT @row_limit
), last AS (
    SELECT b.tx, b.id FROM batch b ORDER BY b.tx DESC, b.id DESC LIMIT 1
), senders AS (
    -- Who sent in which conversation: a member is a recipient of the batch unless it sent
    -- every one of the conversation's messages in it. Joining members per conversation,
    -- not per message, keeps a busy group's batch from multiplying by its size.
    SELECT DISTINCT b.conversation_id, x.sender_id FROM batch b
    JOIN messages x ON x.id = b.message_id
    WHERE b.type = 'message'
), rcpt AS (
    SELECT DISTINCT m.user_id
    FROM (SELECT DISTINCT s.conversation_id FROM senders s) c
    JOIN members m ON m.conversation_id = c.conversation_id
    JOIN users u ON u.id = m.user_id AND u.notify_webhook
    WHERE EXISTS (SELECT 1 FROM senders s
                  WHERE s.conversation_id = c.conversation_id AND s.sender_id IS DISTINCT FROM m.user_id)
), ins AS (
    INSERT INTO notify_pending (user_id) SELECT r.user_id FROM rcpt r ORDER BY r.user_id
    ON CONFLICT DO NOTHING
    RETURNING user_id
), mv AS (
    UPDATE notify_cursor c SET tx = last.tx, id = last.id FROM last
)
SELECT last.tx, last.id, (SELECT count(*) FROM batch)::int AS events,
    ARRAY(SELECT i.user_id FROM ins i ORDER BY i.user_id)::text[] AS scheduled
FROM last;

-- name: NotifyTakePending :exec
-- A check's first statement: from here on a new message makes the user pending again and
-- schedules a new check (or waits for this transaction and then does), and everything the
-- check reads afterwards includes any message whose scheduling found the row still there.
DELETE FROM notify_pending WHERE user_id = @user_id;

-- name: NotifyPend :exec
INSERT INTO notify_pending (user_id) VALUES (@user_id) ON CONFLICT DO NOTHING;

-- name: NotifyState :one
-- What a check decides on, read at the database's clock (last_seen_at is written with it):
-- whether the user accepts webhooks, is online anywhere (a stream or poll, see presence),
-- has anything unread (by others, system messages included, not deleted), when it was
-- last seen and last notified.
SELECT u.notify_webhook, u.last_seen_at, u.notified_at, now()::timestamptz AS db_now,
    EXISTS (SELECT 1 FROM presence p JOIN instances i ON i.id = p.instance_id
            WHERE p.user_id = u.id
              AND i.heartbeat_at > now() - make_interval(secs => @stale_seconds::float8)) AS online,
    EXISTS (SELECT 1 FROM members m
            JOIN messages x ON x.conversation_id = m.conversation_id AND x.seq > m.last_read_seq
            WHERE m.user_id = u.id AND x.sender_id IS DISTINCT FROM m.user_id
              AND x.deleted_at IS NULL) AS unread
FROM users u WHERE u.id = @user_id;

-- name: NotifyMarkNotified :exec
UPDATE users SET notified_at = now() WHERE id = @user_id;

-- name: NotifyDigest :many
-- The digest of a user's unread messages: the most recently active conversations with
-- unread messages, each with its unread count and its first unread messages, cut to
-- preview_chars characters (one more than shown, so the caller knows it was cut).
SELECT c.id AS conversation_id, c.title, c.unread_count,
    x.id AS message_id, x.seq, x.sender_id, su.name AS sender_name, x.preview
FROM (
    SELECT cv.id, cv.title, cv.activity_at, m.last_read_seq, n.unread_count
    FROM members m
    JOIN conversations cv ON cv.id = m.conversation_id
    CROSS JOIN LATERAL (
        SELECT count(*) AS unread_count FROM messages y
        WHERE y.conversation_id = m.conversation_id AND y.seq > m.last_read_seq
          AND y.sender_id IS DISTINCT FROM m.user_id AND y.deleted_at IS NULL) n
    WHERE m.user_id = @user_id AND n.unread_count > 0
    ORDER BY cv.activity_at DESC, cv.id
    LIMIT @max_conversations
) c
CROSS JOIN LATERAL (
    SELECT y.id, y.seq, y.sender_id, left(y.body, @preview_chars::int) AS preview
    FROM messages y
    WHERE y.conversation_id = c.id AND y.seq > c.last_read_seq
      AND y.sender_id IS DISTINCT FROM @user_id::text AND y.deleted_at IS NULL
    ORDER BY y.seq
    LIMIT @max_messages
) x
LEFT JOIN users su ON su.id = x.sender_id
ORDER BY c.activity_at DESC, c.id, x.seq;
