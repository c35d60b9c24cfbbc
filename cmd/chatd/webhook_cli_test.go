package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

// hook is one webhook request the test receiver got.
type hook struct {
	id     string
	body   []byte
	status int
}

// TestCLIWebhookSurvivesKill runs the binary as deployed: a message posted over HTTP to a
// user who never connects gets its digest; the receiver refuses the first attempt; the
// instance that made it is killed with SIGKILL before the retry; a second instance, started
// afterwards, makes the retry, with the same webhook-id and body.
func TestCLIWebhookSurvivesKill(t *testing.T) {
	t.Parallel()
	bin := cliBuild(t, t.TempDir())
	dbURL, _ := cliDatabase(t)

	hooks := make(chan hook, 10)
	var mu sync.Mutex
	answers := []int{http.StatusServiceUnavailable}
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		status := http.StatusNoContent
		mu.Lock()
		if len(answers) > 0 {
			status, answers = answers[0], answers[1:]
		}
		mu.Unlock()
		w.WriteHeader(status)
		hooks <- hook{id: r.Header.Get("webhook-id"), body: body, status: status}
	}))
	defer rcv.Close()
	env := cliEnv("CHAT_DATABASE_URL="+dbURL, "CHAT_JWT_SECRET="+cliSecret,
		"CHAT_WEBHOOK_URL="+rcv.URL, "CHAT_WEBHOOK_SECRET="+webhookSecret,
		"CHAT_NOTIFY_AFTER=1s", "CHAT_WEBHOOK_BACKOFF=3s")
	_, errOut, err := cliRun(t, bin, env, "migrate")
	require.NoError(t, err, errOut)

	addrA := cliFreeAddr(t)
	baseA, procA := cliServeProcess(t, bin, env, addrA, "-addr", addrA)
	alice := cliToken(t, bin, env, "--sub", "alice", "--name", "Alice")
	status, _, body := cliHTTP(t, "POST", baseA+"/v1/conversations", alice, nil, map[string]string{"participant_id": "bob"})
	require.Equal(t, http.StatusCreated, status, string(body))
	var conv struct{ ID string }
	require.NoError(t, json.Unmarshal(body, &conv))
	status, _, body = cliHTTP(t, "POST", baseA+"/v1/conversations/"+conv.ID+"/messages", alice, nil, map[string]string{"body": "Still for sale?"})
	require.Equal(t, http.StatusCreated, status, string(body))

	first := nextHook(t, hooks)
	require.Equal(t, http.StatusServiceUnavailable, first.status)
	waitForRetry(t, dbURL)
	require.NoError(t, procA.Signal(syscall.SIGKILL))

	addrB := cliFreeAddr(t)
	cliServe(t, bin, env, addrB, "-addr", addrB)
	second := nextHook(t, hooks)
	require.Equal(t, http.StatusNoContent, second.status)
	require.Equal(t, first.id, second.id)
	require.Equal(t, first.body, second.body)
	var digest struct {
		UserID string `json:"user_id"`
	}
	require.NoError(t, json.Unmarshal(second.body, &digest))
	require.Equal(t, "bob", digest.UserID)
}

// nextHook waits for the receiver's next request.
func nextHook(t *testing.T, hooks <-chan hook) hook {
	t.Helper()
	select {
	case h := <-hooks:
		return h
	case <-time.After(30 * time.Second):
		t.Fatal("no webhook within 30s")
		return hook{}
	}
}

// waitForRetry waits until River has recorded the failed first attempt: the delivery job
// waits for its retry, held by no instance.
func waitForRetry(t *testing.T, dbURL string) {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), dbURL)
	require.NoError(t, err)
	defer conn.Close(context.Background())
	require.Eventually(t, func() bool {
		var n int
		err := conn.QueryRow(context.Background(), `SELECT count(*) FROM river_job
			WHERE kind = 'chatd_notify_deliver' AND state IN ('retryable', 'available') AND attempt = 1`).Scan(&n)
		return err == nil && n == 1
	}, 20*time.Second, 10*time.Millisecond)
}
