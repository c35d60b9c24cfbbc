package notify

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/riverqueue/river"
)

// maxAnswerBytes is how much of a receiver's answer is read (and thrown away) before the
// connection is given back: a receiver that streams an endless body cannot hold a worker.
const maxAnswerBytes = 64 << 10

// deliverArgs is one webhook to send: its id, the same on every attempt, and its body,
// rendered once by the check that decided to send it and stored with the job, so that every
// retry sends the same bytes. The body is a JSON string here, not an object, so that
// PostgreSQL's jsonb does not reorder or respace it.
type deliverArgs struct {
	WebhookID string `json:"webhook_id"`
	UserID    string `json:"user_id"`
	Body      string `json:"body"`
}

// Kind implements river.JobArgs.
func (deliverArgs) Kind() string { return "chatd_notify_deliver" }

// InsertOpts implements river.JobArgsWithInsertOpts. The give-up time (Config.GiveUpAfter)
// ends the retries, not a number of attempts.
func (deliverArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: Queue, MaxAttempts: 1000}
}

// deliverWorker posts webhooks. River hands a job to one worker of one instance at a time
// (row lock, SKIP LOCKED); a failure is retried by NextRetry's schedule, on whichever
// instance fetches the job next.
type deliverWorker struct {
	river.WorkerDefaults[deliverArgs]
	n *Notifier
}

// Work makes one attempt; after GiveUpAfter a failure cancels the job for good.
func (w *deliverWorker) Work(ctx context.Context, job *river.Job[deliverArgs]) error {
	err := w.n.post(ctx, job.Args)
	if err == nil {
		w.n.delivered.Add(1)
		return nil
	}
	w.n.failed.Add(1)
	w.n.logger.Warn("webhook attempt failed", "webhook_id", job.Args.WebhookID, "attempt", job.Attempt, "err", err)
	if w.n.now().Sub(job.CreatedAt) >= w.n.cfg.GiveUpAfter {
		return river.JobCancel(fmt.Errorf("gave up after %s: %w", w.n.cfg.GiveUpAfter, err))
	}
	return err
}

// NextRetry doubles the wait after each failed attempt from Config.Backoff up to
// Config.MaxBackoff, with 10 % jitter so that the retries of an outage's many webhooks
// spread out; the last attempt is made when GiveUpAfter runs out.
func (w *deliverWorker) NextRetry(job *river.Job[deliverArgs]) time.Time {
	cfg := w.n.cfg
	wait := cfg.Backoff
	for i := 1; i < job.Attempt && wait < cfg.MaxBackoff; i++ {
		wait *= 2
	}
	wait = min(wait, cfg.MaxBackoff)
	wait += time.Duration(rand.Int64N(int64(wait)/10 + 1))
	next := w.n.now().Add(wait)
	if deadline := job.CreatedAt.Add(cfg.GiveUpAfter); next.After(deadline) {
		next = deadline
	}
	return next
}

// Timeout implements river.Worker: an attempt's HTTP timeout, and a little for the rest.
func (w *deliverWorker) Timeout(*river.Job[deliverArgs]) time.Duration {
	return w.n.cfg.Timeout + 5*time.Second
}

// post makes one signed attempt. Only a 2xx answer counts; a redirect is not followed (the
// receiver's address is the operator's to change) and counts as a failure.
func (n *Notifier) post(ctx context.Context, a deliverArgs) error {
	ts := strconv.FormatInt(n.now().Unix(), 10)
	body := []byte(a.Body)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.cfg.URL, strings.NewReader(a.Body))
	if err != nil {
		return errors.New("webhook request: invalid CHAT_WEBHOOK_URL")
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "chatd-webhooks")
	req.Header.Set("webhook-id", a.WebhookID)
	req.Header.Set("webhook-timestamp", ts)
	req.Header.Set("webhook-signature", Sign(n.cfg.Secret, a.WebhookID, ts, body))
	resp, err := n.client.Do(req)
	if err != nil {
		// The URL may carry a credential of the receiver's: say what failed without it.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("post webhook: %w", err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxAnswerBytes))
	_ = resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("webhook receiver answered %d", resp.StatusCode)
	}
	return nil
}

// newHTTPClient is the webhook client: a whole attempt within timeout, no redirects, no
// cookies, connections kept for the next attempt.
func newHTTPClient(timeout time.Duration) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 4
	tr.ResponseHeaderTimeout = timeout
	return &http.Client{
		Timeout:   timeout,
		Transport: tr,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}
