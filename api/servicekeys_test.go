package api

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseServiceKeys(t *testing.T) {
	long := strings.Repeat("k", MinServiceKeyLen)
	keys, err := ParseServiceKeys(" app:" + long + " , billing.v2:" + long + "2,")
	require.NoError(t, err)
	require.Equal(t, 2, keys.Len())
	require.Equal(t, "app", keys.match(long))
	require.Equal(t, "billing.v2", keys.match(long+"2"))
	require.Empty(t, keys.match(long[1:]))
	require.Empty(t, keys.match(""))
	empty, err := ParseServiceKeys("")
	require.NoError(t, err)
	require.Empty(t, empty.match(""), "no keys: nothing matches, not even nothing")

	for _, bad := range []string{
		"app:" + long[1:],                    // too short
		"app" + long,                         // no name
		":" + long,                           // empty name
		"a b:" + long,                        // a space in the name
		"app:" + long + ",app:" + long + "x", // the name twice
		"a:" + long + ",b:" + long,           // the key twice
		"app:" + long + " x",                 // a space in the key
	} {
		_, err := ParseServiceKeys(bad)
		require.Error(t, err, bad)
		require.NotContains(t, err.Error(), long, "an error never quotes a key")
	}
}

// FuzzParseServiceKeys: whatever the setting holds, parsing never panics, an error never
// quotes a key, and every key it accepts is long enough and found again by its name.
func FuzzParseServiceKeys(f *testing.F) {
	f.Add("app:" + strings.Repeat("k", 40))
	f.Add("a:" + strings.Repeat("k", 40) + ",b:" + strings.Repeat("z", 33))
	f.Add(",,:,")
	f.Fuzz(func(t *testing.T, s string) {
		keys, err := ParseServiceKeys(s)
		if err != nil {
			return
		}
		for _, pair := range strings.Split(s, ",") {
			name, key, ok := strings.Cut(strings.TrimSpace(pair), ":")
			if !ok {
				continue
			}
			if len(key) < MinServiceKeyLen {
				t.Fatalf("accepted a short key in %q", s)
			}
			if got := keys.match(key); got != name {
				t.Fatalf("key of %q matched %q", name, got)
			}
		}
	})
}

// FuzzParseMetadata: accepted metadata is a JSON object of at most 4 KiB without NUL,
// which jsonb can store, and parsing never panics.
func FuzzParseMetadata(f *testing.F) {
	f.Add([]byte(`{"listing": 123, "title": "Blue bike"}`))
	f.Add([]byte(`null`))
	f.Add([]byte(`{"a": "\u0000"}`))
	f.Add([]byte(`[1, 2]`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		out, err := parseMetadata(raw)
		if err != nil {
			return
		}
		var v map[string]any
		if json.Unmarshal(out, &v) != nil || v == nil && string(out) != "{}" {
			t.Fatalf("accepted %q as %q, not an object", raw, out)
		}
		if len(out) > maxMetadataBytes || hasNUL(v) {
			t.Fatalf("accepted %q", raw)
		}
	})
}
