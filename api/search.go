package api

import (
	"encoding/base64"
	"html"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gin-gonic/gin"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/chatd/chatd/db"
	"github.com/chatd/chatd/events"
)

// maxSearchBytes caps the search text: a few words to a sentence is what people search
// for, and every word is one more index lookup.
const maxSearchBytes = 256

// maxSearchLimit caps a page of results: each result carries a snippet made from its body.
const maxSearchLimit = 50

// searchResult is one entry of a search answer. Snippet is HTML: the message's text
// around the matches, escaped, with each match in <mark>…</mark> and no other tag, so a
// client may insert it as HTML as it stands.
type searchResult struct {
	Message events.Message `json:"message"`
	Snippet string         `json:"snippet"`
}

// search finds the caller's messages matching q, newest first, in all of the caller's
// conversations or in the one conversation_id names.
func (s *Server) search(c *gin.Context) error {
	q, err := searchText(c)
	if err != nil {
		return err
	}
	limit, err := queryInt(c, "limit", 20, 1, maxSearchLimit)
	if err != nil {
		return err
	}
	params := db.SearchMessagesParams{UserID: user(c), Q: q, RowLimit: int32(limit + 1)}
	if cur, ok := c.GetQuery("cursor"); ok {
		at, id, err := parseSearchCursor(cur)
		if err != nil {
			return err
		}
		params.BeforeAt, params.BeforeID = &at, id
	}
	if v, ok := c.GetQuery("conversation_id"); ok {
		conv, ok := events.ParseUUID(v)
		if !ok {
			return errNotFound // like any unknown conversation id
		}
		if err := s.requireMember(c, conv); err != nil {
			return err
		}
		params.ConversationID = conv
	}
	results, next, err := s.searchPage(c, params, int(limit))
	if err != nil {
		return err
	}
	c.JSON(http.StatusOK, gin.H{"results": results, "next_cursor": next})
	return nil
}

// searchPage runs a validated search: up to limit results, and the cursor of the next page
// when there is one.
func (s *Server) searchPage(c *gin.Context, params db.SearchMessagesParams, limit int) ([]searchResult, *string, error) {
	results := []searchResult{}
	tree, err := s.q.SearchQueryTree(c, params.Q)
	switch {
	case err != nil:
		return nil, nil, err
	case tree == "":
		return results, nil, nil // only stop words or punctuation: nothing can match
	case tree == "T":
		return nil, nil, errorf("invalid_query", "q needs at least one word that results must contain, not only excluded ones")
	}
	rows, err := s.q.SearchMessages(c, params)
	if err != nil {
		return nil, nil, err
	}
	var next *string
	if len(rows) > limit {
		rows = rows[:limit]
		last := rows[limit-1]
		n := searchCursor(last.CreatedAt, last.ID)
		next = &n
	}
	for _, r := range rows {
		m := db.Message{ID: r.ID, ConversationID: r.ConversationID, Seq: r.Seq, Kind: r.Kind, SenderID: r.SenderID, Body: r.Body,
			ClientID: r.ClientID, CreatedAt: r.CreatedAt, EditedAt: r.EditedAt, DeletedAt: r.DeletedAt, Attachments: r.Attachments}
		results = append(results, searchResult{Message: events.MessageFrom(m), Snippet: markSnippet(r.Snippet)})
	}
	return results, next, nil
}

// searchText is the q parameter: required, some text, at most maxSearchBytes.
func searchText(c *gin.Context) (string, error) {
	q := c.Query("q")
	switch {
	case strings.TrimSpace(q) == "":
		return "", errorf("invalid_query", "q is required: the words to search for")
	case len(q) > maxSearchBytes:
		return "", errorf("invalid_query", "q is longer than %d bytes", maxSearchBytes)
	case !utf8.ValidString(q) || !validText(q):
		return "", errorf("invalid_query", "q must be UTF-8 text without NUL characters")
	}
	return q, nil
}

// markSnippet turns a headline from the database, whose matches are enclosed in U+0001 and
// U+0002 (removed from the text beforehand), into HTML: the text escaped, the matches in
// <mark>. The body is user text, so it is escaped first; only then do the marks become tags.
func markSnippet(headline string) string {
	return snippetMarks.Replace(html.EscapeString(headline))
}

var snippetMarks = strings.NewReplacer("\x01", "<mark>", "\x02", "</mark>")

// searchCursor is the keyset position after a result, opaque to clients: the list cursor's
// form (created_at in microseconds and id), base64url-encoded.
func searchCursor(at time.Time, id pgtype.UUID) string {
	return base64.RawURLEncoding.EncodeToString([]byte(conversationCursor(at, id)))
}

func parseSearchCursor(s string) (time.Time, pgtype.UUID, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return time.Time{}, pgtype.UUID{}, errorf("invalid_cursor", "cursor is not one this service returned")
	}
	return parseConversationCursor(string(b))
}
