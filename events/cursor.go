package events

import (
	"errors"
	"strconv"
	"strings"
)

// Cursor is a position in the durable event log: the writing transaction's id and the
// event's id within the log (schema.sql explains why both are needed). The zero Cursor is
// the position before the first event.
type Cursor struct {
	Tx uint64
	ID int64
}

// ErrMalformedCursor is returned by ParseCursor for anything it did not produce.
var ErrMalformedCursor = errors.New("malformed cursor")

// String is the opaque form sent to clients as an SSE id and a poll cursor: "<tx>_<id>" in
// decimal, short and easy to read in curl output.
func (c Cursor) String() string {
	return string(c.Append(make([]byte, 0, 24)))
}

// Append appends the String form of c to b, without allocating.
func (c Cursor) Append(b []byte) []byte {
	b = strconv.AppendUint(b, c.Tx, 10)
	b = append(b, '_')
	return strconv.AppendInt(b, c.ID, 10)
}

// ParseCursor parses what Cursor.String produced and nothing else: no signs, spaces or
// leading zeros, so every cursor has exactly one spelling.
func ParseCursor(s string) (Cursor, error) {
	tx, id, ok := strings.Cut(s, "_")
	if !ok || !canonical(tx) || !canonical(id) {
		return Cursor{}, ErrMalformedCursor
	}
	t, err := strconv.ParseUint(tx, 10, 64)
	if err != nil {
		return Cursor{}, ErrMalformedCursor
	}
	i, err := strconv.ParseInt(id, 10, 64)
	if err != nil {
		return Cursor{}, ErrMalformedCursor
	}
	return Cursor{Tx: t, ID: i}, nil
}

// canonical reports whether s is a decimal number without sign or leading zero.
func canonical(s string) bool {
	if s == "" || len(s) > 20 || (len(s) > 1 && s[0] == '0') {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// Less reports whether c comes before o in the log.
func (c Cursor) Less(o Cursor) bool {
	return c.Tx < o.Tx || (c.Tx == o.Tx && c.ID < o.ID)
}

// IsZero reports whether c is the position before the first event.
func (c Cursor) IsZero() bool { return c == Cursor{} }
