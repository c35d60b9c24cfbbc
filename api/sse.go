package api

import (
	"bytes"
	"strconv"
	"time"

	"github.com/chatd/chatd/events"
)

// appendEvent frames one event for text/event-stream. id is empty for ephemeral events.
// Every line of data gets its own "data:" field, whatever its terminator (CR, LF or CRLF,
// all line breaks to a parser), so the framing never depends on what data holds; JSON from
// encoding/json has no raw line breaks at all.
func appendEvent(b []byte, id, typ string, data []byte) []byte {
	if id != "" {
		b = appendIDLine(b, id)
	}
	return appendTypeAndData(b, typ, data)
}

// appendDurable frames a durable event, its cursor as the id, without allocating.
func appendDurable(b []byte, c events.Cursor, typ string, data []byte) []byte {
	b = append(b, "id: "...)
	b = c.Append(b)
	b = append(b, '\n')
	return appendTypeAndData(b, typ, data)
}

func appendIDLine(b []byte, id string) []byte {
	b = append(b, "id: "...)
	b = append(b, id...)
	return append(b, '\n')
}

func appendTypeAndData(b []byte, typ string, data []byte) []byte {
	b = append(b, "event: "...)
	b = append(b, typ...)
	b = append(b, '\n')
	for {
		i := bytes.IndexAny(data, "\r\n")
		b = append(b, "data: "...)
		if i < 0 {
			b = append(b, data...)
			b = append(b, '\n')
			break
		}
		b = append(b, data[:i]...)
		b = append(b, '\n')
		if data[i] == '\r' && i+1 < len(data) && data[i+1] == '\n' {
			i++
		}
		data = data[i+1:]
	}
	return append(b, '\n')
}

// appendComment frames a comment line, which clients ignore and proxies count as traffic.
func appendComment(b []byte, text string) []byte {
	b = append(b, ": "...)
	b = append(b, text...)
	return append(b, "\n\n"...)
}

// appendRetry sets the client's reconnection delay.
func appendRetry(b []byte, d time.Duration) []byte {
	b = append(b, "retry: "...)
	b = strconv.AppendInt(b, d.Milliseconds(), 10)
	return append(b, "\n\n"...)
}

// appendID sets the client's last event id without dispatching an event (a block with an
// id and no data): a stream that drops before its first durable event then still resumes
// from the position it started at, not from whatever is newest at reconnect.
func appendID(b []byte, id string) []byte {
	b = append(b, "id: "...)
	b = append(b, id...)
	return append(b, "\n\n"...)
}
