package notify

// A webhook receiver as an application would run one, with the signature check written
// from the text of the Standard Webhooks specification ("Verifying webhooks"), not with
// this package's signer:
//
//   - the signed content is the webhook-id, a full stop, the webhook-timestamp, a full stop
//     and the raw body;
//   - the key is the base64 part of the secret after the "whsec_" prefix;
//   - the signature is the base64 of the HMAC-SHA256 of the signed content; the
//     webhook-signature header is a space-delimited list of "v1,<signature>" entries, and
//     any one of them may match, compared in constant time;
//   - a timestamp more than five minutes from the receiver's clock is refused (replay).

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// specVerify reports whether headers h sign body under secret, as the specification says.
func specVerify(secret string, h http.Header, body []byte, now time.Time) error {
	id, ts, sigs := h.Get("webhook-id"), h.Get("webhook-timestamp"), h.Get("webhook-signature")
	if id == "" || ts == "" || sigs == "" {
		return fmt.Errorf("missing headers")
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("bad timestamp %q", ts)
	}
	if d := now.Sub(time.Unix(sec, 0)); d > 5*time.Minute || d < -5*time.Minute {
		return fmt.Errorf("timestamp %s too far from now", ts)
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		return err
	}
	mac := hmac.New(sha256.New, key)
	fmt.Fprintf(mac, "%s.%s.%s", id, ts, body)
	want := mac.Sum(nil)
	for _, entry := range strings.Fields(sigs) {
		version, sig, ok := strings.Cut(entry, ",")
		if !ok || version != "v1" {
			continue
		}
		got, err := base64.StdEncoding.DecodeString(sig)
		if err == nil && hmac.Equal(got, want) {
			return nil
		}
	}
	return fmt.Errorf("no matching signature in %q", sigs)
}

// delivery is one request the receiver got.
type delivery struct {
	ID, Timestamp string
	Body          []byte
	Status        int // what the receiver answered
	At            time.Time
}

// receiver is a real HTTP server that verifies every request and answers the statuses it
// is told to, in order (then 200).
type receiver struct {
	*httptest.Server
	got chan delivery

	mu      sync.Mutex
	answers []int
	bad     []error // requests whose signature failed
}

// newReceiver starts a receiver that answers answers, then 200.
func newReceiver(t *testing.T, answers ...int) *receiver {
	r := &receiver{got: make(chan delivery, 100), answers: answers}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		status := http.StatusOK
		r.mu.Lock()
		if err := specVerify(testSecret, req.Header, body, time.Now()); err != nil {
			r.bad = append(r.bad, err)
			status = http.StatusUnauthorized
		} else if len(r.answers) > 0 {
			status, r.answers = r.answers[0], r.answers[1:]
		}
		r.mu.Unlock()
		w.WriteHeader(status)
		r.got <- delivery{ID: req.Header.Get("webhook-id"), Timestamp: req.Header.Get("webhook-timestamp"),
			Body: body, Status: status, At: time.Now()}
	}))
	t.Cleanup(r.Close)
	return r
}

// badSignatures returns the verification failures so far.
func (r *receiver) badSignatures() []error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]error(nil), r.bad...)
}

// next waits for the next request, up to within.
func (r *receiver) next(t *testing.T, within time.Duration) delivery {
	t.Helper()
	select {
	case d := <-r.got:
		return d
	case <-time.After(within):
		t.Fatalf("no webhook within %s", within)
		return delivery{}
	}
}

// none checks that no request has arrived (call it once the jobs have settled).
func (r *receiver) none(t *testing.T) {
	t.Helper()
	select {
	case d := <-r.got:
		t.Fatalf("unexpected webhook %s: %s", d.ID, d.Body)
	default:
	}
}
