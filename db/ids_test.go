package db

import (
	"context"
	"encoding/binary"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Messages get UUID version 7 ids (schema.sql, chat_uuid_v7): the RFC 9562 version and
// variant bits, and the creation time in milliseconds in the first 48 bits, so ids of
// later messages never sort before earlier ones' and new keys land at the primary key's
// right end.
func TestMessageIDsAreTimeOrderedUUIDv7(t *testing.T) {
	f := newSenderFixture(t)
	ctx := context.Background()
	s := NewSender(f.pool, SenderConfig{})
	before := time.Now().Add(-time.Second).UnixMilli()
	var last uint64
	for i := range 5 {
		out, err := s.Send(ctx, Send{ConversationID: f.a, SenderID: "alice", Body: "hi"})
		require.NoError(t, err)
		require.True(t, out.OK)
		id := out.Message.ID.Bytes
		require.Equal(t, byte(0x70), id[6]&0xf0, "version 7, send %d", i)
		require.Equal(t, byte(0x80), id[8]&0xc0, "RFC 9562 variant, send %d", i)
		ms := binary.BigEndian.Uint64(append([]byte{0, 0}, id[:6]...))
		require.GreaterOrEqual(t, ms, last, "time-ordered, send %d", i)
		require.GreaterOrEqual(t, int64(ms), before)
		require.LessOrEqual(t, int64(ms), time.Now().Add(time.Second).UnixMilli())
		last = ms
	}
}
