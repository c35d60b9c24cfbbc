package api

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
)

// maxAuthJSChunks bounds the chunk indexes read: Auth.js cuts a token into chunks of 3936
// characters (its SessionStore: 4096 less an estimated 160 for the cookie's attributes), so
// maxAuthJSTokenBytes never needs more than nine.
const maxAuthJSChunks = maxAuthJSTokenBytes/3936 + 1

var errAuthJSCookie = errors.New("authjs: the session cookie chunks do not form one token")

// authjsCookieToken returns the Auth.js session token the cookies carry under name: the
// cookie itself, or the chunks name.0, name.1, … joined in index order, as Auth.js's
// SessionStore writes them. It is stricter than Auth.js's reader, which joins every cookie
// whose name starts with name: chunks must run from 0 without a gap, and a whole cookie
// beside chunks is refused rather than guessed at. Of two cookies of one name (two paths),
// the first counts, as in Auth.js's cookie parser. present is false when there is no such
// cookie at all; the work is linear in the cookies' size and stops at maxAuthJSTokenBytes.
func authjsCookieToken(cookies []*http.Cookie, name string) (token string, present bool, err error) {
	var whole *string
	var chunks [maxAuthJSChunks]*string
	n := 0 // chunk indexes seen are all below n
	for _, c := range cookies {
		rest, ok := strings.CutPrefix(c.Name, name)
		if !ok || c.Value == "" {
			continue
		}
		if rest == "" {
			if whole == nil {
				whole = &c.Value
			}
			continue
		}
		i, ok := chunkIndex(rest)
		if !ok {
			continue // another cookie whose name merely begins the same
		}
		if i >= maxAuthJSChunks {
			return "", true, errAuthJSCookie
		}
		if chunks[i] == nil {
			chunks[i] = &c.Value
			n = max(n, i+1)
		}
	}
	switch {
	case whole == nil && n == 0:
		return "", false, nil
	case whole != nil && n > 0:
		return "", true, errAuthJSCookie
	case whole != nil:
		if len(*whole) > maxAuthJSTokenBytes {
			return "", true, errAuthJSCookie
		}
		return *whole, true, nil
	}
	var b strings.Builder
	for _, c := range chunks[:n] {
		if c == nil || b.Len()+len(*c) > maxAuthJSTokenBytes {
			return "", true, errAuthJSCookie
		}
		b.WriteString(*c)
	}
	return b.String(), true, nil
}

// chunkIndex reads the ".N" after a chunked cookie's name, N in the decimal form Auth.js
// writes (no sign, no leading zero).
func chunkIndex(suffix string) (int, bool) {
	digits, ok := strings.CutPrefix(suffix, ".")
	if !ok || digits == "" || len(digits) > 3 || (len(digits) > 1 && digits[0] == '0') {
		return 0, false
	}
	for _, r := range digits {
		if r < '0' || r > '9' {
			return 0, false
		}
	}
	i, err := strconv.Atoi(digits)
	return i, err == nil
}
