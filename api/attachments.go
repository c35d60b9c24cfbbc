package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"mime"
	"net/url"
	"regexp"
	"strings"
)

// Attachments are references to files the application stored itself (its bucket or CDN);
// chatd checks and relays them and never fetches them. These limits keep a message with
// ten of them well inside a stream's buffer (CHAT_STREAM_BUFFER_KB).
const (
	maxAttachments      = 10
	maxAttachmentURL    = 2048
	maxAttachmentName   = 255
	maxContentType      = 127
	maxAttachmentSize   = 1<<53 - 1 // the largest integer every JSON client reads exactly
	maxAttachmentPixels = 100_000   // width or height
)

// attachment is one checked attachment, as stored and sent.
type attachment struct {
	URL         string `json:"url"`
	Name        string `json:"name"`
	ContentType string `json:"content_type"`
	Size        int64  `json:"size"`
	Width       *int64 `json:"width,omitempty"`
	Height      *int64 `json:"height,omitempty"`
}

// hostPattern is one entry of CHAT_ATTACHMENT_HOSTS: a lowercase ASCII host name (IDNs in
// their punycode form), optionally with a port, no trailing dot.
var hostPattern = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*(:[1-9][0-9]{0,4})?$`)

// ParseAttachmentHosts reads CHAT_ATTACHMENT_HOSTS: comma-separated hosts, each compared
// byte for byte with the host (and port) of an attachment's URL. Only the canonical form
// is accepted, so that what is listed is exactly what a browser will contact.
func ParseAttachmentHosts(list string) ([]string, error) {
	var hosts []string
	for _, h := range strings.Split(list, ",") {
		h = strings.TrimSpace(h)
		switch {
		case h == "":
			continue
		case h != strings.ToLower(h):
			return nil, fmt.Errorf("attachment host %q: write it in lowercase", h)
		case strings.HasSuffix(h, "."):
			return nil, fmt.Errorf("attachment host %q: no trailing dot", h)
		case strings.ContainsFunc(h, func(r rune) bool { return r > 0x7e }):
			return nil, fmt.Errorf("attachment host %q: write an international name in its punycode form (xn--...)", h)
		case !hostPattern.MatchString(h):
			return nil, fmt.Errorf("attachment host %q: not a host name with an optional port (no scheme, path or user)", h)
		}
		hosts = append(hosts, h)
	}
	return hosts, nil
}

// checkAttachments checks the attachments of a send and returns them as the JSON array to
// store (`[]` when there are none), or a 422 invalid_attachment naming the attachment and
// the field at fault.
func checkAttachments(raw json.RawMessage, hosts []string) ([]byte, int, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return []byte("[]"), 0, nil
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, 0, errorf("invalid_attachment", "attachments must be an array of objects")
	}
	if len(items) > maxAttachments {
		return nil, 0, errorf("invalid_attachment", "at most %d attachments, not %d", maxAttachments, len(items))
	}
	out := make([]attachment, len(items))
	for i, item := range items {
		a, field, problem := checkAttachment(item, hosts)
		if problem != "" {
			return nil, 0, errorf("invalid_attachment", "attachments[%d]%s: %s", i, field, problem)
		}
		out[i] = a
	}
	b, err := json.Marshal(out)
	return b, len(out), err
}

// checkAttachment checks one attachment; on refusal it returns the field (".url") and why.
func checkAttachment(raw json.RawMessage, hosts []string) (a attachment, field, problem string) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil || fields == nil {
		return a, "", "must be an object {url, name, content_type, size, width?, height?}"
	}
	for k := range fields {
		switch k {
		case "url", "name", "content_type", "size", "width", "height":
		default:
			return a, "", fmt.Sprintf("unknown field %q", k)
		}
	}
	for _, f := range []struct {
		name  string
		check func(json.RawMessage) string
	}{
		{"url", stringField(&a.URL, func(s string) string { return checkURL(s, hosts) })},
		{"name", stringField(&a.Name, checkName)},
		{"content_type", stringField(&a.ContentType, checkContentType)},
		{"size", intField(&a.Size, 0, maxAttachmentSize)},
	} {
		v, ok := fields[f.name]
		if !ok || string(v) == "null" {
			return a, "." + f.name, "is required"
		}
		if problem := f.check(v); problem != "" {
			return a, "." + f.name, problem
		}
	}
	for _, f := range []struct {
		name string
		dst  **int64
	}{{"width", &a.Width}, {"height", &a.Height}} {
		if v, ok := fields[f.name]; ok && string(v) != "null" {
			*f.dst = new(int64)
			if problem := intField(*f.dst, 1, maxAttachmentPixels)(v); problem != "" {
				return a, "." + f.name, problem
			}
		}
	}
	return a, "", ""
}

// stringField decodes a JSON string into dst and checks it.
func stringField(dst *string, check func(string) string) func(json.RawMessage) string {
	return func(v json.RawMessage) string {
		if err := json.Unmarshal(v, dst); err != nil {
			return "must be a string"
		}
		return check(*dst)
	}
}

// intField decodes a JSON integer from lo to hi into dst.
func intField(dst *int64, lo, hi int64) func(json.RawMessage) string {
	return func(v json.RawMessage) string {
		// json.Number would also take a string holding a number ("12"): only a JSON number is.
		dec := json.NewDecoder(bytes.NewReader(v))
		dec.UseNumber()
		var n json.Number
		if err := dec.Decode(&n); err != nil || len(v) == 0 || v[0] == '"' {
			return "must be an integer"
		}
		i, err := n.Int64()
		if err != nil || i < lo || i > hi {
			return fmt.Sprintf("must be an integer from %d to %d", lo, hi)
		}
		*dst = i
		return ""
	}
}

// checkURL accepts only an https URL on a listed host, in a form that every parser reads
// alike: printable ASCII (anything else percent-encoded), no backslash (browsers read it
// as a slash, Go's parser does not), no user information, and the host written exactly as
// listed: no other case, no trailing dot, no percent-encoding, no port unless listed.
func checkURL(s string, hosts []string) string {
	if len(s) > maxAttachmentURL {
		return fmt.Sprintf("is longer than %d bytes", maxAttachmentURL)
	}
	if strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r >= 0x7f || r == '\\' }) {
		return "must be printable ASCII without spaces or backslashes (percent-encode the rest)"
	}
	rest, ok := strings.CutPrefix(s, "https://")
	if !ok {
		return "must be an https:// URL"
	}
	host := rest
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		host = rest[:i]
	}
	if strings.Contains(host, "@") {
		return "must not carry user information (user@host)"
	}
	listed := false
	for _, h := range hosts {
		listed = listed || h == host
	}
	if !listed {
		return fmt.Sprintf("host %q is not an attachment host of this service (CHAT_ATTACHMENT_HOSTS, matched exactly: lowercase, no trailing dot, a port only if listed)", host)
	}
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "https" || u.Host != host || u.User != nil || u.Opaque != "" {
		return "is not a valid URL"
	}
	return ""
}

func checkName(s string) string {
	switch {
	case strings.TrimSpace(s) == "":
		return "must not be empty"
	case len(s) > maxAttachmentName:
		return fmt.Sprintf("is longer than %d bytes", maxAttachmentName)
	case !validText(s) || !validLine(s):
		return "must be one line without control characters"
	}
	return ""
}

func checkContentType(s string) string {
	if len(s) > maxContentType {
		return fmt.Sprintf("is longer than %d bytes", maxContentType)
	}
	mt, _, err := mime.ParseMediaType(s)
	if err != nil || !strings.Contains(mt, "/") || !validLine(s) {
		return "must be a media type such as image/png"
	}
	return ""
}
