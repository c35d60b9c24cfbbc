package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chatd/chatd/api"
)

func TestDevModeListensOnLoopbackUnlessToldOtherwise(t *testing.T) {
	t.Run("default", func(t *testing.T) {
		c, err := load(t, nil, "-dev")
		require.NoError(t, err)
		require.Equal(t, "127.0.0.1:8080", c.Addr, "dev mode mints tokens for anyone: never on every interface by default")
	})
	t.Run("variable", func(t *testing.T) {
		c, err := load(t, map[string]string{"CHAT_ADDR": ":9000"}, "-dev")
		require.NoError(t, err)
		require.Equal(t, ":9000", c.Addr)
	})
	t.Run("flag", func(t *testing.T) {
		c, err := load(t, nil, "-dev", "-addr", "0.0.0.0:9001")
		require.NoError(t, err)
		require.Equal(t, "0.0.0.0:9001", c.Addr)
	})
	t.Run("not dev", func(t *testing.T) {
		c, err := load(t, nil)
		require.NoError(t, err)
		require.Equal(t, ":8080", c.Addr)
	})
}

func TestDevModeRefusesAConfiguredSecret(t *testing.T) {
	t.Run("variable", func(t *testing.T) {
		_, err := load(t, map[string]string{"CHAT_JWT_SECRET": "production-secret-of-32-bytes!!!"}, "-dev")
		require.ErrorContains(t, err, "CHAT_JWT_SECRET")
	})
	t.Run("file", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "secret")
		require.NoError(t, os.WriteFile(file, []byte("production-secret-of-32-bytes!!!\n"), 0o600))
		_, err := load(t, map[string]string{"CHAT_JWT_SECRET_FILE": file}, "-dev")
		require.ErrorContains(t, err, "CHAT_JWT_SECRET")
	})
	t.Run("flag", func(t *testing.T) {
		_, err := load(t, nil, "-dev", "-jwt-secret", "production-secret-of-32-bytes!!!")
		require.ErrorContains(t, err, "CHAT_JWT_SECRET")
	})
	t.Run("none", func(t *testing.T) {
		_, err := load(t, nil, "-dev")
		require.NoError(t, err)
	})
}

// A secret file written by an editor or `echo` ends in a line break: `serve` and `token`
// must read the same secret from it, or the server refuses every token `token` prints.
func TestTokenAndServeReadTheSameSecretFile(t *testing.T) {
	const secret = "secret-from-a-file-of-at-least-32-bytes"
	file := filepath.Join(t.TempDir(), "secret")
	require.NoError(t, os.WriteFile(file, []byte(secret+"\r\n"), 0o600))
	t.Setenv("CHAT_JWT_SECRET_FILE", file)

	c, err := load(t, nil)
	require.NoError(t, err)
	require.Equal(t, secret, c.JWTSecret)

	var out bytes.Buffer
	require.NoError(t, token([]string{"--sub", "alice", "--ttl", "1m"}, &out))
	v, err := api.NewVerifier(context.Background(), api.KeyConfig{Secret: []byte(c.JWTSecret)})
	require.NoError(t, err)
	id, err := v.Verify(context.Background(), strings.TrimSpace(out.String()))
	require.NoError(t, err, "the server accepts what `chatd token` prints")
	require.Equal(t, "alice", id.Sub)
	require.WithinDuration(t, time.Now().Add(time.Minute), id.Expires, 5*time.Second)
}
