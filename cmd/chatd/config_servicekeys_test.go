package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestConfigServiceKeys(t *testing.T) {
	key := strings.Repeat("k", 40)
	// Subtests only: t.Setenv lasts until its test ends, and would leak into the next case.
	t.Run("from a file", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "service_keys")
		require.NoError(t, os.WriteFile(file, []byte("app:"+key+"\n"), 0o600))
		c, err := load(t, map[string]string{"CHAT_SERVICE_KEYS_FILE": file})
		require.NoError(t, err)
		require.Equal(t, "app:"+key, c.ServiceKeys)
	})
	t.Run("a short key stops the start", func(t *testing.T) {
		_, err := load(t, map[string]string{"CHAT_SERVICE_KEYS": "app:short-key"})
		require.ErrorContains(t, err, "CHAT_SERVICE_KEYS")
		require.NotContains(t, err.Error(), "short-key", "the error repeats the key")
	})
	t.Run("none", func(t *testing.T) {
		c, err := load(t, nil)
		require.NoError(t, err)
		require.Empty(t, c.ServiceKeys)
	})
}
