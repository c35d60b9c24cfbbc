package notify

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/stretchr/testify/require"

	"github.com/chatd/chatd"
	"github.com/chatd/chatd/events"
)

// requireDigestContract checks body against the unread.digest webhook of openapi.yaml.
func requireDigestContract(t *testing.T, body []byte) {
	t.Helper()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(chatd.OpenAPI)
	require.NoError(t, err)
	require.NoError(t, doc.Validate(loader.Context))
	hook := doc.Webhooks["unread.digest"]
	require.NotNil(t, hook, "openapi.yaml documents no unread.digest webhook")
	schema := hook.Post.RequestBody.Value.Content.Get("application/json").Schema
	var v any
	require.NoError(t, json.Unmarshal(body, &v))
	require.NoError(t, schema.Value.VisitJSON(v, openapi3.EnableJSONSchema2020()))
}

// The digest's body, a system message and an unnamed sender included, is what the
// contract says; an extra field would not be.
func TestDigestMatchesContract(t *testing.T) {
	name := "Alice"
	title := "Bike"
	d := Digest{Type: "unread.digest", UserID: "bob", CreatedAt: events.Time(time.Now()),
		Conversations: []DigestConversation{{ID: "c1", Title: &title, UnreadCount: 5, Messages: []DigestMessage{
			{ID: "m1", Seq: 1, SenderID: senderOf("alice"), SenderName: &name, Preview: "hi"},
			{ID: "m2", Seq: 2, Preview: "closed by the shop"},
		}}, {ID: "c2", UnreadCount: 1, Messages: []DigestMessage{{ID: "m3", Seq: 9, SenderID: senderOf("carol"), Preview: "?"}}}}}
	body, err := json.Marshal(d)
	require.NoError(t, err)
	requireDigestContract(t, body)
}
