package events

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestCursorRoundTrip(t *testing.T) {
	for _, c := range []Cursor{{}, {Tx: 1, ID: 1}, {Tx: 741, ID: 1023}, {Tx: math.MaxUint64, ID: math.MaxInt64}} {
		got, err := ParseCursor(c.String())
		require.NoError(t, err)
		require.Equal(t, c, got)
	}
	require.Equal(t, "741_1023", Cursor{Tx: 741, ID: 1023}.String())
}

func TestParseCursorRejects(t *testing.T) {
	for _, s := range []string{"", "_", "1", "1_", "_1", "01_1", "1_01", "-1_1", "1_-1", "+1_1", "1_1_1",
		" 1_1", "1_1 ", "1.1", "18446744073709551616_1", "1_9223372036854775808", "a_b", "1_1\x00"} {
		_, err := ParseCursor(s)
		require.ErrorIs(t, err, ErrMalformedCursor, "%q", s)
	}
}

func TestCursorOrder(t *testing.T) {
	require.True(t, Cursor{Tx: 1, ID: 9}.Less(Cursor{Tx: 2, ID: 1}))
	require.True(t, Cursor{Tx: 2, ID: 1}.Less(Cursor{Tx: 2, ID: 2}))
	require.False(t, Cursor{Tx: 2, ID: 2}.Less(Cursor{Tx: 2, ID: 2}))
}

// FuzzParseCursor checks that every accepted cursor has exactly one spelling.
func FuzzParseCursor(f *testing.F) {
	for _, s := range []string{"0_0", "741_1023", "1_01", "", "x", "18446744073709551615_9223372036854775807"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseCursor(s)
		if err != nil {
			return
		}
		if c.String() != s {
			t.Fatalf("ParseCursor(%q) = %v, which prints as %q", s, c, c.String())
		}
	})
}

func BenchmarkParseCursor(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseCursor("18446744073_9223372036"); err != nil {
			b.Fatal(err)
		}
	}
}
