// Package openapi owns the OpenAPI 3.1 document of keywatch's /v1 API (openapi.json, kept in the
// repository and embedded in the binary): every /v1 route, its parameters, request and response
// schemas, errors and security schemes. It serves the document; it does not route, authenticate
// or answer any other request (app's router and the packages that own each resource do).
package openapi

import (
	_ "embed"
	"net/http"
	"strconv"
)

//go:embed openapi.json
var document []byte

// Document returns a copy of the OpenAPI document (JSON).
func Document() []byte { return append([]byte(nil), document...) }

// Handler serves the document as application/json.
func Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(document)))
		_, _ = w.Write(document)
	})
}
