package api

import (
	"context"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/chatd/chatd/db"
)

// heldExec counts Exec calls and holds each until gate closes.
type heldExec struct {
	db.DBTX
	calls atomic.Int32
	gate  chan struct{}
}

func (h *heldExec) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	h.calls.Add(1)
	<-h.gate
	return h.DBTX.Exec(ctx, sql, args...)
}

// The first requests of one identity arriving together (a client opening its streams, an
// account's many connections) share one upsert instead of one each, which filled the pool
// with upserts queued on the same row while other users' sends waited for a connection.
func TestUserCacheSharesOneUpsertAmongConcurrentFirstRequests(t *testing.T) {
	in := newInstance(t)
	q := &heldExec{DBTX: in.Pool, gate: make(chan struct{})}
	cache := newUserCache(20)
	sub := uniq("burst")
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for range 20 {
		wg.Go(func() {
			c, _ := gin.CreateTestContext(httptest.NewRecorder())
			c.Request = httptest.NewRequest("GET", "/v1/events", nil)
			errs <- cache.ensure(c, db.New(q), sub, "Burst")
		})
	}
	require.Never(t, func() bool { return q.calls.Load() > 1 }, 300*time.Millisecond, 5*time.Millisecond)
	close(q.gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	require.Equal(t, int32(1), q.calls.Load())
	require.NoError(t, cache.ensure(nil, db.New(q), sub, "Burst"), "cached: no query, no context needed")
	require.Equal(t, int32(1), q.calls.Load())
}
