package api

import (
	"testing"
	"time"
)

// TestBrowserMembershipAndSystemMessages runs the web client in headless Chromium as two
// users on two instances while the application's backend acts through the server API
// (web/e2e/members.mjs): a system message appears apart from users' messages, live and in
// history; the conversation's metadata and closed state are shown; a member the server adds
// appears in the participants list live; leaving a group, or being removed, takes the
// conversation out of the list. A screenshot of a closed conversation goes to the artifacts
// directory.
func TestBrowserMembershipAndSystemMessages(t *testing.T) {
	node, script := browserScript(t, "members.mjs")
	a, b := newInstance(t, demoWeb), newInstance(t, demoWeb)
	runBrowserScript(t, node, script, 2*time.Minute, func(string) string { return "" }, a.URL, b.URL, testServiceKey, artifactsDir(t))
}
