package api

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// imageHost is an https server of one 40×30 PNG that counts the requests it gets.
type imageHost struct {
	*httptest.Server
	hits atomic.Int64
}

func newImageHost(t *testing.T) *imageHost {
	img := image.NewRGBA(image.Rect(0, 0, 40, 30))
	for x := range 40 {
		for y := range 30 {
			img.Set(x, y, color.RGBA{R: 200, G: uint8(x * 6), B: uint8(y * 8), A: 255})
		}
	}
	var b bytes.Buffer
	require.NoError(t, png.Encode(&b, img))
	h := &imageHost{}
	h.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.hits.Add(1)
		w.Header().Set("Content-Type", "image/png")
		_, _ = w.Write(b.Bytes())
	}))
	t.Cleanup(h.Close)
	return h
}

// host is the server's host:port, as CHAT_ATTACHMENT_HOSTS lists it.
func (h *imageHost) host() string { return strings.TrimPrefix(h.URL, "https://") }

// TestBrowserShowsAttachmentsAndFindsMessages runs web/e2e/media.mjs in headless Chromium:
// the page finds a message by a word, opens its conversation there and shows its image from
// the listed host, loaded; the image on a host the page's instance does not list is a link,
// and that host never hears from the browser.
func TestBrowserShowsAttachmentsAndFindsMessages(t *testing.T) {
	node, script := browserScript(t, "media.mjs")
	listed, unlisted := newImageHost(t), newImageHost(t)
	page := newInstance(t, demoWeb, withAttachmentHosts(listed.host()))
	// The message is sent through an instance that lists both hosts, as after a change of
	// CHAT_ATTACHMENT_HOSTS: what the page shows is its own instance's decision.
	sender := newInstance(t, withAttachmentHosts(listed.host(), unlisted.host()))
	word := searchWord()

	runBrowserScript(t, node, script, 2*time.Minute, func(line string) string {
		f := strings.Fields(line)
		if len(f) != 3 || f[0] != "SEND" {
			return ""
		}
		path := sender.URL + "/v1/conversations/" + f[2] + "/messages"
		r := call(t, "POST", path, f[1], map[string]any{"body": "the " + word + " as promised", "attachments": []any{
			map[string]any{"url": listed.URL + "/scratch.png", "name": "scratch.png", "content_type": "image/png",
				"size": 1234, "width": 40, "height": 30},
			map[string]any{"url": unlisted.URL + "/elsewhere.png", "name": "elsewhere.png", "content_type": "image/png",
				"size": 99, "width": 40, "height": 30},
			map[string]any{"url": listed.URL + "/receipt.pdf", "name": "receipt.pdf", "content_type": "application/pdf", "size": 20480},
		}})
		require.Equal(t, http.StatusCreated, r.Status, "%s", r.Body)
		for i := range 60 {
			r := call(t, "POST", path, f[1], map[string]any{"body": fmt.Sprintf("and then %d", i)})
			require.Equal(t, http.StatusCreated, r.Status, "%s", r.Body)
		}
		return "OK"
	}, page.URL, word)

	require.Positive(t, listed.hits.Load(), "the listed image was loaded")
	require.Zero(t, unlisted.hits.Load(), "nothing is loaded from a host the page's instance does not list")
}
