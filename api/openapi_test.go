package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/stretchr/testify/require"

	"github.com/chatd/chatd"
)

// The contract is openapi.yaml (embedded as chatd.OpenAPI). These tests keep it and the
// code in step: every route of the router is in it and nothing else is, and every answer a
// REST test receives through call is checked against the operation it answers, with
// kin-openapi, a maintained validator (OpenAPI 3.1 with JSON Schema 2020-12).

// undocumented are the routes openapi.yaml leaves out on purpose, with the reason.
var undocumented = map[string]string{
	"GET /web/*file": "the web client's static files: a catch-all that an OpenAPI path template cannot express (a template segment never spans '/'); described under GET /",
}

var contract struct {
	once   sync.Once
	doc    *openapi3.T
	router routers.Router
	err    error
}

// loadContract parses and validates openapi.yaml once per test binary.
func loadContract() (*openapi3.T, routers.Router, error) {
	c := &contract
	c.once.Do(func() {
		loader := openapi3.NewLoader()
		c.doc, c.err = loader.LoadFromData(chatd.OpenAPI)
		if c.err != nil {
			c.err = fmt.Errorf("openapi.yaml does not load: %w", c.err)
			return
		}
		if c.err = c.doc.Validate(loader.Context); c.err != nil {
			c.err = fmt.Errorf("openapi.yaml is not a valid OpenAPI document: %w", c.err)
			return
		}
		c.router, c.err = gorillamux.NewRouter(c.doc)
	})
	return c.doc, c.router, c.err
}

func TestOpenAPIDocumentIsValid(t *testing.T) {
	doc, _, err := loadContract()
	require.NoError(t, err)
	require.True(t, doc.IsOpenAPI31OrLater(), "openapi.yaml must be OpenAPI 3.1: %s", doc.OpenAPI)
}

// ginPathToOpenAPI turns gin's "/conversations/:id" into "/conversations/{id}".
var ginParam = regexp.MustCompile(`:([A-Za-z0-9_]+)`)

func ginPathToOpenAPI(p string) string { return ginParam.ReplaceAllString(p, "{$1}") }

// TestOpenAPICoversEveryRoute fails when a route of the router is missing from openapi.yaml,
// or when openapi.yaml describes a route the router does not have. The server is built
// with every optional route switched on (the web client and dev mode).
func TestOpenAPICoversEveryRoute(t *testing.T) {
	doc, _, err := loadContract()
	require.NoError(t, err)
	srv := NewServer(Config{Dev: true, Web: http.Dir("../web")})

	routed := map[string]bool{}
	for _, r := range srv.Routes() {
		key := r.Method + " " + r.Path
		if _, ok := undocumented[key]; ok {
			continue
		}
		routed[r.Method+" "+ginPathToOpenAPI(r.Path)] = true
	}
	described := map[string]bool{}
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			described[strings.ToUpper(method)+" "+path] = true
		}
	}
	var missing, extra []string
	for k := range routed {
		if !described[k] {
			missing = append(missing, k)
		}
	}
	for k := range described {
		if !routed[k] {
			extra = append(extra, k)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	require.Empty(t, missing, "routes of api/server.go that openapi.yaml does not describe (add them, or to undocumented with a reason)")
	require.Empty(t, extra, "operations of openapi.yaml that the router does not have")
}

func TestOpenAPIServed(t *testing.T) {
	srv := httptest.NewServer(NewServer(Config{}))
	defer srv.Close()
	r := call(t, "GET", srv.URL+"/openapi.yaml", "", nil)
	require.Equal(t, http.StatusOK, r.Status)
	require.Equal(t, "application/yaml", r.Header.Get("Content-Type"))
	require.Equal(t, chatd.OpenAPI, r.Body)
}

// checkContract fails the test when r, the answer to method url, is not one that
// openapi.yaml describes for that operation: an undocumented status, a missing required
// header (Retry-After), a content type or a body that does not match the schema. call runs
// it on every answer.
func checkContract(t testing.TB, method, url string, r response) {
	t.Helper()
	if err := contractError(method, url, r); err != nil {
		body := r.Body
		if len(body) > 2000 {
			body = append(body[:2000:2000], "…"...)
		}
		t.Errorf("the answer breaks openapi.yaml: %s %s → %d %s\n%v\nbody: %s",
			method, url, r.Status, r.Header.Get("Content-Type"), err, body)
	}
}

func contractError(method, url string, r response) error {
	doc, router, err := loadContract()
	if err != nil {
		return err
	}
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		return err
	}
	route, params, err := router.FindRoute(req)
	if err != nil {
		var re *routers.RouteError
		if !errors.As(err, &re) {
			return err
		}
		return outsideContract(doc, req, r)
	}
	if r.Status == http.StatusOK && strings.HasPrefix(r.Header.Get("Content-Type"), "text/event-stream") {
		// A stream's body is not a document to validate (docs/stream.md describes it);
		// only check that the operation is one that streams.
		if resp := route.Operation.Responses.Status(r.Status); resp == nil || resp.Value.Content.Get("text/event-stream") == nil {
			return errors.New("a text/event-stream answer from an operation that does not stream")
		}
		return nil
	}
	resp := route.Operation.Responses.Status(r.Status)
	if resp == nil {
		return fmt.Errorf("status %d is not documented for %s %s", r.Status, method, route.Path)
	}
	if len(resp.Value.Content) == 0 && len(r.Body) > 0 {
		return fmt.Errorf("status %d of %s %s is documented without a body, but one came", r.Status, method, route.Path)
	}
	if method == http.MethodHead {
		// kin-openapi does not validate HEAD answers; status and headers are still ours.
		for name, h := range resp.Value.Headers {
			if h.Value.Required && r.Header.Get(name) == "" {
				return fmt.Errorf("header %s is required for status %d", name, r.Status)
			}
		}
		return nil
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route},
		Status:                 r.Status,
		Header:                 r.Header,
		Options:                &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	in.Options.WithCustomSchemaErrorFunc(shortSchemaError)
	in.SetBodyBytes(r.Body)
	return openapi3filter.ValidateResponse(context.Background(), in)
}

// shortSchemaError says where and why a body breaks its schema, without printing the
// whole schema after it.
func shortSchemaError(err *openapi3.SchemaError) string {
	if err.Reason == "" {
		return ""
	}
	return fmt.Sprintf("at /%s: %s", strings.Join(err.JSONPointer(), "/"), err.Reason)
}

// outsideContract checks an answer to a path or method openapi.yaml does not have: the
// JSON 404 or 405 error, or a route left out on purpose.
func outsideContract(doc *openapi3.T, req *http.Request, r response) error {
	if req.Method == http.MethodGet && strings.HasPrefix(req.URL.Path, "/web/") {
		return nil // see undocumented
	}
	if !slices.Contains([]int{http.StatusNotFound, http.StatusMethodNotAllowed}, r.Status) {
		return fmt.Errorf("%s %s is not in openapi.yaml, yet it answered %d (only a 404 or 405 error may)",
			req.Method, req.URL.Path, r.Status)
	}
	if req.Method == http.MethodHead {
		return nil
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		return fmt.Errorf("a %d error with Content-Type %q, not the JSON error body", r.Status, ct)
	}
	schema := doc.Components.Schemas["Error"]
	var v any
	if err := json.Unmarshal(r.Body, &v); err != nil {
		return fmt.Errorf("the %d error body is not JSON: %w", r.Status, err)
	}
	return schema.Value.VisitJSON(v, openapi3.EnableJSONSchema2020(), openapi3.VisitAsResponse())
}
