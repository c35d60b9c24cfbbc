package main

import (
	"flag"
	"io"
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
