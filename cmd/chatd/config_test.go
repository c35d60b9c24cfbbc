package main

import (
	"context"
	"flag"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func load(t *testing.T, env map[string]string, args ...string) (config, error) {
	for k, v := range env {
		t.Setenv(k, v)
	}
	var c config
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return c, c.load(fs, args)
}

func TestConfigDefaults(t *testing.T) {
	c, err := load(t, nil)
	require.NoError(t, err)
	require.Equal(t, ":8080", c.Addr)
	require.Equal(t, "postgres://127.0.0.1:5432/chat?sslmode=disable", c.DatabaseURL)
	require.Equal(t, c.DatabaseURL, c.ListenURL, "the listener uses the main URL unless told otherwise")
	require.Equal(t, 15*time.Second, c.Heartbeat)
	require.True(t, c.CookieSecure)
	require.False(t, c.Dev, "dev mode is never the default")
}

func TestConfigEnvironmentThenFlags(t *testing.T) {
	c, err := load(t, map[string]string{"CHAT_SSE_HEARTBEAT": "5s", "CHAT_COOKIE_SECURE": "false",
		"CHAT_ALLOWED_ORIGINS": "https://a.example, https://b.example", "CHAT_ADDR": ":9000"},
		"-sse-heartbeat", "7s", "-dev")
	require.NoError(t, err)
	require.Equal(t, 7*time.Second, c.Heartbeat, "a flag wins over the variable")
	require.Equal(t, ":9000", c.Addr)
	require.False(t, c.CookieSecure)
	require.True(t, c.Dev)
	require.Equal(t, []string{"https://a.example", "https://b.example"}, c.origins())
}

func TestConfigFailsFastOnNonsense(t *testing.T) {
	for env, value := range map[string]string{
		"CHAT_SSE_HEARTBEAT":     "0s",
		"CHAT_JWT_LEEWAY":        "31s",
		"CHAT_DB_MAX_CONNS":      "one",
		"CHAT_MAX_MESSAGE_BYTES": "100000",
		"CHAT_COOKIE_SECURE":     "maybe",
	} {
		// One subtest per variable: t.Setenv lasts until its test ends, so in a shared test
		// an earlier bad variable would still be set and make every later case fail for
		// the wrong reason.
		t.Run(env, func(t *testing.T) {
			_, err := load(t, map[string]string{env: value})
			require.ErrorContains(t, err, env, "the error names the variable at fault")
		})
	}
}

// CHAT_AUTHJS_SECRET is a rotation list, from the environment or a file, and enough on its
// own to start: an app that signs its users in with Auth.js needs no other key.
func TestConfigAuthJSSecret(t *testing.T) {
	// Subtests only: t.Setenv lasts until its test ends, and would leak into the next case.
	t.Run("a rotation list", func(t *testing.T) {
		c, err := load(t, map[string]string{"CHAT_AUTHJS_SECRET": "current-secret, retiring-secret,"})
		require.NoError(t, err)
		require.Equal(t, [][]byte{[]byte("current-secret"), []byte("retiring-secret")}, c.authjsSecrets())
		v, err := newVerifier(context.Background(), &c)
		require.NoError(t, err, "an Auth.js secret alone is a key")
		require.NotNil(t, v)
	})
	t.Run("from a file", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "auth_secret")
		require.NoError(t, os.WriteFile(file, []byte("from-the-file\n"), 0o600))
		c, err := load(t, map[string]string{"CHAT_AUTHJS_SECRET_FILE": file})
		require.NoError(t, err)
		require.Equal(t, [][]byte{[]byte("from-the-file")}, c.authjsSecrets())
	})
	t.Run("a list of nothing", func(t *testing.T) {
		_, err := load(t, map[string]string{"CHAT_AUTHJS_SECRET": " , "})
		require.ErrorContains(t, err, "CHAT_AUTHJS_SECRET")
	})
	t.Run("no key at all", func(t *testing.T) {
		c, err := load(t, nil)
		require.NoError(t, err)
		_, err = newVerifier(context.Background(), &c)
		require.ErrorContains(t, err, "CHAT_AUTHJS_SECRET", "the error names every way to configure a key")
	})
}
