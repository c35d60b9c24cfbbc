package api

import (
	"crypto/rand"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// Every route that may write the event log rings the doorbell when it ends, whatever its
// handler does: a route that forgot would deliver its events only at the safety poll, and
// no other test would notice. The routes come from the router itself, so a write route
// added later is checked too.
func TestEveryWriteRouteRingsTheDoorbell(t *testing.T) {
	in := newInstance(t)
	alice := newUser(t, in, "alice")
	// Routes that write nothing to the event log.
	quiet := map[string]string{
		"POST /v1/session":                        "sets a cookie",
		"POST /v1/tickets":                        "stores a ticket, not an event",
		"POST /v1/conversations/:id/typing":       "ephemeral: a NOTIFY of its own",
		"DELETE /v1/session":                      "clears a cookie",
		"POST /dev/token":                         "mints a token",
		"POST /v1/server/conversations/:id/close": "sets closed_at; no event (sends refused from then on are answered 409)",
	}
	checked := 0
	for _, r := range in.Server.Config.Handler.(*Server).engine.Routes() {
		if r.Method != "POST" && r.Method != "PATCH" && r.Method != "DELETE" {
			continue
		}
		if _, ok := quiet[r.Method+" "+r.Path]; ok {
			continue
		}
		path := r.Path
		for _, p := range []string{":id", ":message_id", ":user_id"} {
			path = strings.ReplaceAll(path, p, randomUUID())
		}
		before := in.Log.Rings()
		tok := alice.Token
		if strings.HasPrefix(path, "/v1/server/") {
			tok = testServiceKey
		}
		res := call(t, r.Method, in.URL+path, tok, map[string]any{})
		require.Greater(t, in.Log.Rings(), before, "%s %s (answered %d) did not ring", r.Method, r.Path, res.Status)
		checked++
	}
	require.GreaterOrEqual(t, checked, 5, "the write routes were found")

	// And a write that succeeds rings as well (the common case).
	conv := alice.direct(newUser(t, in, "bob"))
	before := in.Log.Rings()
	alice.send(conv.ID, "hello")
	require.Greater(t, in.Log.Rings(), before)
}

func randomUUID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	b[6], b[8] = b[6]&0x0f|0x40, b[8]&0x3f|0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}
