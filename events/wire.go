package events

import (
	"encoding/json"
	"time"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/chatd/chatd/db"
)

// The JSON objects of API.md that travel both in REST responses and in stream events. They
// live here because the log reader renders each event once, for all its recipients.

// Time marshals as RFC 3339 with milliseconds in UTC, as API.md fixes.
type Time time.Time

// TimeLayout is the wire layout of every timestamp.
const TimeLayout = "2006-01-02T15:04:05.000Z"

// MarshalJSON implements json.Marshaler.
func (t Time) MarshalJSON() ([]byte, error) {
	b := make([]byte, 0, len(TimeLayout)+2)
	b = append(b, '"')
	b = time.Time(t).UTC().AppendFormat(b, TimeLayout)
	return append(b, '"'), nil
}

// UnmarshalJSON implements json.Unmarshaler, for clients and tests written in Go.
func (t *Time) UnmarshalJSON(b []byte) error {
	var tt time.Time
	if err := tt.UnmarshalJSON(b); err != nil {
		return err
	}
	*t = Time(tt)
	return nil
}

func timePtr(t *time.Time) *Time {
	if t == nil {
		return nil
	}
	w := Time(*t)
	return &w
}

// Message is the message object. Kind is "user", or "system" for a message the
// application's backend posted, which has no sender (SenderID nil).
type Message struct {
	ID             string  `json:"id"`
	ConversationID string  `json:"conversation_id"`
	Seq            int64   `json:"seq"`
	Kind           string  `json:"kind"`
	SenderID       *string `json:"sender_id"`
	Body           string  `json:"body"`
	ClientID       *string `json:"client_id"`
	CreatedAt      Time    `json:"created_at"`
	EditedAt       *Time   `json:"edited_at"`
	DeletedAt      *Time   `json:"deleted_at"`
	// Attachments is the stored JSON array as it stands (the API checked every entry before
	// storing it), never null: `[]` without attachments.
	Attachments json.RawMessage `json:"attachments"`
}

// noAttachments is the attachments of a message that has none.
var noAttachments = json.RawMessage("[]")

// MessageFrom converts a stored message to its wire form.
func MessageFrom(m db.Message) Message {
	return Message{
		ID:             UUIDString(m.ID),
		ConversationID: UUIDString(m.ConversationID),
		Seq:            m.Seq,
		Kind:           m.Kind,
		SenderID:       m.SenderID,
		Body:           m.Body,
		ClientID:       m.ClientID,
		CreatedAt:      Time(m.CreatedAt),
		EditedAt:       timePtr(m.EditedAt),
		DeletedAt:      timePtr(m.DeletedAt),
		Attachments:    attachmentsOf(m.Attachments),
	}
}

func attachmentsOf(stored []byte) json.RawMessage {
	if len(stored) == 0 {
		return noAttachments
	}
	return stored
}

// joinedMessage is a message read through a LEFT JOIN, whose columns are all nullable; it
// returns nil when no message was joined. (The sender is NULL for a system message.)
func joinedMessage(id, conv pgtype.UUID, seq *int64, kind, sender, body, clientID *string,
	created, edited, deleted *time.Time, attachments []byte) *Message {
	if !id.Valid || seq == nil || kind == nil || body == nil || created == nil {
		return nil
	}
	m := MessageFrom(db.Message{ID: id, ConversationID: conv, Seq: *seq, Kind: *kind, SenderID: sender, Body: *body,
		ClientID: clientID, CreatedAt: *created, EditedAt: edited, DeletedAt: deleted, Attachments: attachments})
	return &m
}

// Participant is one member of a conversation as listed in the conversation object.
type Participant struct {
	ID     string  `json:"id"`
	Name   *string `json:"name"`
	Online bool    `json:"online"`
}

// Conversation is the conversation object, as one participant sees it. ExternalID and
// Metadata are the application's (server API); ClosedAt is set once nobody may send.
type Conversation struct {
	ID           string          `json:"id"`
	Kind         string          `json:"kind"`
	Title        *string         `json:"title"`
	ExternalID   *string         `json:"external_id"`
	Metadata     json.RawMessage `json:"metadata"`
	ClosedAt     *Time           `json:"closed_at"`
	Participants []Participant   `json:"participants"`
	LastMessage  *Message        `json:"last_message"`
	LastReadSeq  int64           `json:"last_read_seq"`
	UnreadCount  int64           `json:"unread_count"`
	CreatedAt    Time            `json:"created_at"`
	UpdatedAt    Time            `json:"updated_at"`
}

// ConversationFrom converts a stored conversation row, as seen by one participant, to its
// wire form; participants are filled in by the caller.
func ConversationFrom(r db.MemberConversation) Conversation {
	return Conversation{
		ID:           UUIDString(r.ID),
		Kind:         r.Kind,
		Title:        r.Title,
		ExternalID:   r.ExternalID,
		Metadata:     Metadata(r.Metadata),
		ClosedAt:     timePtr(r.ClosedAt),
		Participants: []Participant{},
		LastMessage: joinedMessage(r.LmID, r.ID, r.LmSeq, r.LmKind, r.LmSenderID, r.LmBody, r.LmClientID,
			r.LmCreatedAt, r.LmEditedAt, r.LmDeletedAt, r.LmAttachments),
		LastReadSeq: r.LastReadSeq,
		UnreadCount: r.UnreadCount,
		CreatedAt:   Time(r.CreatedAt),
		UpdatedAt:   Time(r.UpdatedAt),
	}
}

// Metadata is a conversation's stored metadata as it goes on the wire: the empty object
// when none is stored.
func Metadata(b []byte) json.RawMessage {
	if len(b) == 0 {
		return json.RawMessage("{}")
	}
	return json.RawMessage(b)
}

// Read is the data of a read event.
type Read struct {
	ConversationID string `json:"conversation_id"`
	UserID         string `json:"user_id"`
	Seq            int64  `json:"seq"`
}

// MemberChange is the data of member_added and member_removed events: who joined or left,
// and by whom (the member itself when it left; nil when the server API did it).
type MemberChange struct {
	ConversationID string  `json:"conversation_id"`
	UserID         string  `json:"user_id"`
	By             *string `json:"by"`
}

// Typing is the data of a typing event.
type Typing struct {
	ConversationID string `json:"conversation_id"`
	UserID         string `json:"user_id"`
	Typing         bool   `json:"typing"`
}

// UserPresence is the data of a presence event and one entry of GET /v1/presence.
type UserPresence struct {
	UserID     string `json:"user_id"`
	Online     bool   `json:"online"`
	LastSeenAt *Time  `json:"last_seen_at"`
}

// PresenceEntry is one user of a GET /v1/presence answer.
type PresenceEntry struct {
	ID         string `json:"id"`
	Online     bool   `json:"online"`
	LastSeenAt *Time  `json:"last_seen_at"`
}

// Reset is the data of a reset event: the cursor could not be resumed from.
type Reset struct {
	Reason string `json:"reason"`
	Cursor string `json:"cursor"`
}

// UUIDString formats a UUID in its canonical form, "" for NULL.
func UUIDString(u pgtype.UUID) string {
	if !u.Valid {
		return ""
	}
	return u.String()
}

// ParseUUID parses a client-supplied id in the one form this service writes (lowercase,
// hyphenated); ok is false for anything else, which callers answer with 404 like any other
// unknown id.
func ParseUUID(s string) (u pgtype.UUID, ok bool) {
	if len(s) != 36 {
		return u, false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return u, false
			}
		default:
			if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
				return u, false
			}
		}
	}
	if err := u.Scan(s); err != nil {
		return u, false
	}
	return u, true
}
