package notify

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The example of the Standard Webhooks reference libraries' test suites: this secret, id,
// timestamp and body sign to this signature.
func TestSignSpecExample(t *testing.T) {
	key, err := ParseSecret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	require.NoError(t, err)
	got := Sign(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", []byte(`{"test": 2432232314}`))
	require.Equal(t, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", got)
}

// The test receiver's verifier accepts what Sign makes and refuses a changed body, another
// key, an old timestamp; so a test that passes through it proves the signature.
func TestSpecVerifierAgrees(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	ts := "1800000000"
	body := []byte(`{"type":"unread.digest"}`)
	h := http.Header{}
	h.Set("webhook-id", "msg_1")
	h.Set("webhook-timestamp", ts)
	h.Set("webhook-signature", "v1,bm90IGl0 "+Sign(testKey, "msg_1", ts, body))
	require.NoError(t, specVerify(testSecret, h, body, now))
	require.Error(t, specVerify(testSecret, h, []byte(`{"type":"other"}`), now))
	require.Error(t, specVerify("whsec_"+strings.Repeat("A", 44), h, body, now))
	require.Error(t, specVerify(testSecret, h, body, now.Add(6*time.Minute)))
}

func TestParseSecret(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string // "" for an error
	}{
		{testSecret, string(testKey)},
		{"a-raw-secret-of-24-bytes", "a-raw-secret-of-24-bytes"},
		{"whsec_not base64!", ""},
		{"whsec_c2hvcnQ=", ""}, // "short"
		{"short", ""},
		{"", ""},
	} {
		key, err := ParseSecret(tc.in)
		if tc.want == "" {
			require.Error(t, err, tc.in)
			if len(tc.in) > 6 {
				require.NotContains(t, err.Error(), tc.in[6:], "the error repeats the secret")
			}
			continue
		}
		require.NoError(t, err, tc.in)
		require.Equal(t, tc.want, string(key))
	}
}

// FuzzParseSecret: any text either parses to a key of at least 16 bytes or is refused,
// without panicking.
func FuzzParseSecret(f *testing.F) {
	f.Add(testSecret)
	f.Add("whsec_")
	f.Add("whsec_====")
	f.Add("a-raw-secret-of-24-bytes")
	f.Fuzz(func(t *testing.T, s string) {
		key, err := ParseSecret(s)
		if err == nil && len(key) < minSecretBytes {
			t.Fatalf("accepted a %d-byte key", len(key))
		}
	})
}
