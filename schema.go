// Package chatd holds what the binary and the tests share from the repository root: the
// database schema, embedded so that `chatd migrate` needs no files beside the binary, and
// the HTTP contract (openapi.yaml), embedded so that every instance serves the contract it
// implements.
package chatd

import _ "embed"

// Schema is schema.sql: idempotent DDL applied by db.Migrate.
//
//go:embed schema.sql
var Schema string

// OpenAPI is openapi.yaml: the HTTP contract, served at GET /openapi.yaml.
//
//go:embed openapi.yaml
var OpenAPI []byte
