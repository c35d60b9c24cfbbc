package api

import (
	"bytes"
	"encoding/json"
	"strings"
)

// maxMetadataBytes bounds a conversation's metadata, compacted: it travels in every
// conversation object, so it must stay small (API.md v1.1).
const maxMetadataBytes = 4096

var errMetadata = errorf("invalid_metadata", "metadata must be a JSON object of at most %d bytes, without NUL characters", maxMetadataBytes)

// parseMetadata checks a conversation's metadata as sent and returns it compacted: absent
// or null is the empty object; anything but an object, over maxMetadataBytes, or holding a
// NUL character (which PostgreSQL's jsonb cannot store) is 422.
func parseMetadata(raw json.RawMessage) ([]byte, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return []byte("{}"), nil
	}
	if raw[0] != '{' {
		return nil, errMetadata
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil || buf.Len() > maxMetadataBytes {
		return nil, errMetadata
	}
	var v any
	if err := json.Unmarshal(buf.Bytes(), &v); err != nil || hasNUL(v) {
		return nil, errMetadata
	}
	return buf.Bytes(), nil
}

// hasNUL reports whether any key or string inside a decoded JSON value holds a NUL.
func hasNUL(v any) bool {
	switch t := v.(type) {
	case string:
		return strings.ContainsRune(t, 0)
	case []any:
		for _, e := range t {
			if hasNUL(e) {
				return true
			}
		}
	case map[string]any:
		for k, e := range t {
			if strings.ContainsRune(k, 0) || hasNUL(e) {
				return true
			}
		}
	}
	return false
}
