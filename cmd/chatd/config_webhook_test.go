package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

const webhookSecret = "whsec_YS13ZWJob29rLWtleS1vZi0zMi1ieXRlcy1sZW5ndGg="

func TestConfigWebhooks(t *testing.T) {
	c, err := load(t, nil)
	require.NoError(t, err)
	require.Empty(t, c.WebhookURL, "webhooks are off unless configured")
	require.Equal(t, time.Minute, c.NotifyAfter)

	file := filepath.Join(t.TempDir(), "secret")
	require.NoError(t, os.WriteFile(file, []byte(webhookSecret+"\n"), 0o600))
	c, err = load(t, map[string]string{"CHAT_WEBHOOK_URL": "https://app.example/chat/webhook",
		"CHAT_WEBHOOK_SECRET_FILE": file, "CHAT_NOTIFY_AFTER": "2m"})
	require.NoError(t, err)
	require.Equal(t, webhookSecret, c.WebhookSecret, "read from the file, without its line break")
	require.Equal(t, 2*time.Minute, c.NotifyAfter)
}

func TestConfigWebhooksFailFast(t *testing.T) {
	for name, tc := range map[string]struct {
		env  map[string]string
		want string
	}{
		"url without secret": {map[string]string{"CHAT_WEBHOOK_URL": "https://a.example/h"}, "go together"},
		"secret without url": {map[string]string{"CHAT_WEBHOOK_SECRET": webhookSecret}, "go together"},
		"not http":           {map[string]string{"CHAT_WEBHOOK_URL": "ftp://a.example/h", "CHAT_WEBHOOK_SECRET": webhookSecret}, "CHAT_WEBHOOK_URL"},
		"short secret":       {map[string]string{"CHAT_WEBHOOK_URL": "https://a.example/h", "CHAT_WEBHOOK_SECRET": "whsec_c2hvcnQ="}, "CHAT_WEBHOOK_SECRET"},
		"bad base64":         {map[string]string{"CHAT_WEBHOOK_URL": "https://a.example/h", "CHAT_WEBHOOK_SECRET": "whsec_!!!!-not-base64-at-all"}, "CHAT_WEBHOOK_SECRET"},
		"delay too short":    {map[string]string{"CHAT_WEBHOOK_URL": "https://a.example/h", "CHAT_WEBHOOK_SECRET": webhookSecret, "CHAT_NOTIFY_AFTER": "10ms"}, "CHAT_NOTIFY_AFTER"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := load(t, tc.env)
			require.ErrorContains(t, err, tc.want)
			if s := tc.env["CHAT_WEBHOOK_SECRET"]; len(s) > 6 {
				require.NotContains(t, err.Error(), s[6:], "the error repeats the secret")
			}
		})
	}
}
