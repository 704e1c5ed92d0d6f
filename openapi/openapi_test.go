package openapi

import (
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
)

// TestTheDocumentValidates: the document loads as OpenAPI 3.1 and validates, every path is under
// /v1, and every operation names its id and its responses.
func TestTheDocumentValidates(t *testing.T) {
	doc, err := openapi3.NewLoader().LoadFromData(Document())
	if err != nil {
		t.Fatalf("load openapi.json: %v", err)
	}
	if !doc.IsOpenAPI31OrLater() {
		t.Fatalf("openapi.json is OpenAPI %s, want 3.1", doc.OpenAPI)
	}
	if err := doc.Validate(t.Context()); err != nil {
		t.Fatalf("openapi.json does not validate: %v", err)
	}
	for path, item := range doc.Paths.Map() {
		if !strings.HasPrefix(path, "/v1/") {
			t.Errorf("path %s is not under /v1/", path)
		}
		for method, op := range item.Operations() {
			if op.OperationID == "" || op.Responses.Len() == 0 {
				t.Errorf("%s %s: no operationId or no responses", method, path)
			}
		}
	}
}

// TestHandlerServesTheDocument: GET /v1/openapi.json answers the embedded document as JSON.
func TestHandlerServesTheDocument(t *testing.T) {
	rec := httptest.NewRecorder()
	Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/v1/openapi.json", nil))
	var v map[string]any
	if rec.Code != 200 || rec.Header().Get("Content-Type") != "application/json" || json.Unmarshal(rec.Body.Bytes(), &v) != nil || v["openapi"] != "3.1.0" {
		t.Fatalf("%d %s %.80s", rec.Code, rec.Header().Get("Content-Type"), rec.Body.String())
	}
}
