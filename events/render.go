package events

// Rendering: event rows become the JSON of the contract, once for all recipients.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/chatd/chatd/db"
	"github.com/jackc/pgx/v5/pgtype"
)

// eventRow is what the reader and the replay read of one event.
type eventRow struct {
	cursor     Cursor
	typ        string
	conv       pgtype.UUID
	user       *string
	actor      *string
	seq        *int64
	message    *Message
	recipients []string
}

// rowOf is the one builder of an event row, from the reader's query or (converted) the
// replay's, which select the same columns.
func rowOf(r db.ReadEventsRow) eventRow {
	return eventRow{cursor: Cursor{Tx: r.Tx, ID: r.ID}, typ: r.Type, conv: r.ConversationID, user: r.UserID,
		actor: r.Actor, seq: r.Seq, recipients: r.Recipients,
		message: joinedMessage(r.MID, r.ConversationID, r.MSeq, r.MKind, r.MSenderID, r.MBody, r.MClientID, r.MCreatedAt, r.MEditedAt, r.MDeletedAt, r.MAttachments)}
}

// errBadEvent marks an event row that cannot be rendered. It is logged and skipped: one
// malformed row must not stop delivery of everything after it.
var errBadEvent = errors.New("bad event")

// renderAll renders rows into events, in order, skipping (and logging) malformed ones; it
// fails only when the database does. Conversation events are rendered together, with one
// query for all of the batch's conversations, so a burst of new conversations does not
// hold up the messages behind it.
func (l *Log) renderAll(ctx context.Context, rows []eventRow) ([]*Event, error) {
	convs, err := l.newConversations(ctx, rows)
	if err != nil {
		return nil, err
	}
	evs := make([]*Event, 0, len(rows))
	for _, r := range rows {
		e := &Event{Cursor: r.cursor, Type: r.typ, Recipients: r.recipients, Conversation: UUIDString(r.conv)}
		err := render(e, r, convs)
		if errors.Is(err, errBadEvent) {
			l.cfg.Logger.Error("skipping an event that cannot be rendered", "cursor", r.cursor.String(), "err", err)
			continue
		}
		if err != nil {
			return nil, err
		}
		evs = append(evs, e)
	}
	return evs, nil
}

// render fills in e.Data from the columns of an event row.
func render(e *Event, r eventRow, convs map[[16]byte]*Conversation) error {
	var data any
	switch r.typ {
	case "message", "message_updated", "message_deleted":
		if r.message == nil {
			return fmt.Errorf("%w %v: message missing", errBadEvent, r.cursor)
		}
		data = r.message
	case "read":
		if r.user == nil || r.seq == nil {
			return fmt.Errorf("%w %v: read without user or seq", errBadEvent, r.cursor)
		}
		data = Read{ConversationID: UUIDString(r.conv), UserID: *r.user, Seq: *r.seq}
	case "member_added", "member_removed":
		if r.user == nil {
			return fmt.Errorf("%w %v: member event without user", errBadEvent, r.cursor)
		}
		e.Member = *r.user
		data = MemberChange{ConversationID: UUIDString(r.conv), UserID: *r.user, By: r.actor}
	case "conversation":
		c := convs[r.conv.Bytes]
		if c == nil || len(c.Participants) == 0 {
			return fmt.Errorf("%w %v: conversation missing or empty", errBadEvent, r.cursor)
		}
		data = c
	default:
		return fmt.Errorf("%w %v: unknown type %q", errBadEvent, r.cursor, r.typ)
	}
	b, err := json.Marshal(data)
	e.Data = b
	return err
}

// newConversations loads the conversations of the conversation events among rows, as a
// participant sees a conversation when it is created: nothing sent, nothing read.
func (l *Log) newConversations(ctx context.Context, rows []eventRow) (map[[16]byte]*Conversation, error) {
	var ids []pgtype.UUID
	for _, r := range rows {
		if r.typ == "conversation" {
			ids = append(ids, r.conv)
		}
	}
	if len(ids) == 0 {
		return nil, nil
	}
	meta, err := l.q.ConversationsByID(ctx, ids)
	if err != nil {
		return nil, err
	}
	parts, err := l.q.ListParticipants(ctx, ids)
	if err != nil {
		return nil, err
	}
	users := make([]string, len(parts))
	for i, p := range parts {
		users[i] = p.ID
	}
	var online map[string]bool
	if l.cfg.Online != nil {
		online = l.cfg.Online(ctx, users)
	}
	out := make(map[[16]byte]*Conversation, len(meta))
	for _, m := range meta {
		out[m.ID.Bytes] = &Conversation{ID: UUIDString(m.ID), Kind: m.Kind, Title: m.Title, ExternalID: m.ExternalID,
			Metadata: Metadata(m.Metadata), ClosedAt: timePtr(m.ClosedAt), Participants: []Participant{},
			CreatedAt: Time(m.CreatedAt), UpdatedAt: Time(m.CreatedAt)}
	}
	for _, p := range parts {
		if c := out[p.ConversationID.Bytes]; c != nil {
			c.Participants = append(c.Participants, Participant{ID: p.ID, Name: p.Name, Online: p.TookPart && online[p.ID]})
		}
	}
	return out, nil
}
