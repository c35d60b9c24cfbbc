package db_test

import (
	"context"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/chatd/chatd"
	"github.com/chatd/chatd/db"
	"github.com/chatd/chatd/db/dbtest"
)

// TestMigrateIsIdempotentAndSafeConcurrently starts five "instances" at once on a fresh
// database: every migration succeeds, and the schema version is recorded once.
func TestMigrateIsIdempotentAndSafeConcurrently(t *testing.T) {
	ctx := context.Background()
	url, drop, err := dbtest.Create(ctx, dbtest.ServerURL(), "chatd_test_db", "")
	require.NoError(t, err)
	defer drop()
	var wg sync.WaitGroup
	errs := make(chan error, 5)
	for i := 0; i < 5; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pool, err := db.Open(ctx, url, 2)
			if err != nil {
				errs <- err
				return
			}
			defer pool.Close()
			errs <- db.Migrate(ctx, pool, chatd.Schema)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	conn, err := pgx.Connect(ctx, url)
	require.NoError(t, err)
	defer conn.Close(ctx)
	var versions []int32
	rows, err := conn.Query(ctx, "SELECT version FROM schema_version ORDER BY version")
	require.NoError(t, err)
	versions, err = pgx.CollectRows(rows, pgx.RowTo[int32])
	require.NoError(t, err)
	require.Equal(t, []int32{db.CurrentSchemaVersion}, versions)

	// A database migrated by a newer binary is refused rather than silently misused.
	_, err = conn.Exec(ctx, "INSERT INTO schema_version (version) VALUES ($1)", db.CurrentSchemaVersion+1)
	require.NoError(t, err)
	pool, err := db.Open(ctx, url, 2)
	require.NoError(t, err)
	defer pool.Close()
	require.ErrorContains(t, db.Migrate(ctx, pool, chatd.Schema), "newer")
}

func TestEnsureDatabaseCreatesItOnce(t *testing.T) {
	ctx := context.Background()
	url, drop, err := dbtest.Create(ctx, dbtest.ServerURL(), "chatd_test_db", "")
	require.NoError(t, err)
	drop() // now the name is free: EnsureDatabase must create it
	defer drop()
	require.NoError(t, db.EnsureDatabase(ctx, url))
	require.NoError(t, db.EnsureDatabase(ctx, url))
	conn, err := pgx.Connect(ctx, url)
	require.NoError(t, err)
	conn.Close(ctx)
}
