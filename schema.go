// Package chatd holds what the binary and the tests share from the repository root: the
// database schema, embedded so that `chatd migrate` needs no files beside the binary.
package chatd

import _ "embed"

// Schema is schema.sql: idempotent DDL applied by db.Migrate.
//
//go:embed schema.sql
var Schema string
