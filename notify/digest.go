package notify

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"time"
	"unicode/utf8"

	"github.com/chatd/chatd/db"
	"github.com/chatd/chatd/events"
)

// What one digest carries at most: enough for an email or a push notification to say who
// wrote and what, small enough for any receiver (a few KiB).
const (
	maxConversations = 10
	maxPreviews      = 3   // first unread messages shown per conversation
	previewChars     = 200 // characters of a preview, the ellipsis included
)

// Digest is the body of an unread.digest webhook (README "Notification webhooks").
type Digest struct {
	Type          string               `json:"type"`
	UserID        string               `json:"user_id"`
	Conversations []DigestConversation `json:"conversations"`
	CreatedAt     events.Time          `json:"created_at"`
}

// DigestConversation is one conversation with unread messages in a digest.
type DigestConversation struct {
	ID          string          `json:"id"`
	Title       *string         `json:"title"`
	UnreadCount int64           `json:"unread_count"`
	Messages    []DigestMessage `json:"messages"`
}

// DigestMessage is the preview of one unread message. SenderID is null for a system
// message, SenderName when the sender never signed in with a name.
type DigestMessage struct {
	ID         string  `json:"id"`
	Seq        int64   `json:"seq"`
	SenderID   *string `json:"sender_id"`
	SenderName *string `json:"sender_name"`
	Preview    string  `json:"preview"`
}

// buildDigest reads user's unread messages and renders the digest's body, or nil when
// nothing is unread any more.
func buildDigest(ctx context.Context, q *db.Queries, user string, now time.Time) ([]byte, error) {
	rows, err := q.NotifyDigest(ctx, db.NotifyDigestParams{UserID: user, MaxConversations: maxConversations,
		MaxMessages: maxPreviews, PreviewChars: previewChars + 1})
	if err != nil || len(rows) == 0 {
		return nil, err
	}
	d := Digest{Type: "unread.digest", UserID: user, CreatedAt: events.Time(now)}
	for _, r := range rows {
		id := events.UUIDString(r.ConversationID)
		if n := len(d.Conversations); n == 0 || d.Conversations[n-1].ID != id {
			d.Conversations = append(d.Conversations, DigestConversation{ID: id, Title: r.Title, UnreadCount: r.UnreadCount})
		}
		c := &d.Conversations[len(d.Conversations)-1]
		c.Messages = append(c.Messages, DigestMessage{ID: events.UUIDString(r.MessageID), Seq: r.Seq,
			SenderID: senderOf(r.SenderID), SenderName: r.SenderName, Preview: preview(r.Preview)})
	}
	return json.Marshal(d)
}

// preview cuts s to previewChars characters, marking a cut with an ellipsis.
func preview(s string) string {
	if utf8.RuneCountInString(s) <= previewChars {
		return s
	}
	i, n := 0, 0
	for n < previewChars-1 {
		_, size := utf8.DecodeRuneInString(s[i:])
		i += size
		n++
	}
	return s[:i] + "…"
}

// newWebhookID returns a Standard Webhooks message id: "msg_" and 16 random bytes, the
// idempotency key receivers deduplicate retries by.
func newWebhookID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // crypto/rand never fails on supported platforms
	return "msg_" + base64.RawURLEncoding.EncodeToString(b)
}

// senderOf is the sender of a digest message. It accepts the column as sqlc generates it
// both while messages.sender_id is NOT NULL and once system messages (no sender) make it
// nullable.
func senderOf[T string | *string](s T) *string {
	switch v := any(s).(type) {
	case *string:
		return v
	case string:
		return &v
	}
	return nil
}
