package db

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// SetSearchLanguage makes lang (a text search configuration of the database, such as
// simple or english) the language of message search: it redefines the search functions
// of schema.sql with it and rebuilds the search index, which was built with the previous
// one. When lang is already the language, nothing changes. Run it after Migrate, under
// the same lock, so instances starting together do not rebuild the index twice; every
// instance must be given the same language.
//
// The rebuild reads every message and blocks writes to messages while it runs (about a
// second per 100,000 messages): a change of language is a deliberate, rare act.
func SetSearchLanguage(ctx context.Context, pool *pgxpool.Pool, lang string) error {
	return pgx.BeginTxFunc(ctx, pool, localTx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", migrateLock); err != nil {
			return err
		}
		// The configuration's qualified name, quoted as a literal by the server, and
		// whether it is the current one; no row when lang names no configuration.
		var literal string
		var current bool
		err := tx.QueryRow(ctx, `
			SELECT quote_literal(quote_ident(n.nspname) || '.' || quote_ident(c.cfgname)),
			    c.oid = chat_search_config()
			FROM pg_ts_config c JOIN pg_namespace n ON n.oid = c.cfgnamespace
			WHERE c.cfgname = $1 OR n.nspname || '.' || c.cfgname = $1
			ORDER BY pg_ts_config_is_visible(c.oid) DESC LIMIT 1`, lang).Scan(&literal, &current)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("CHAT_SEARCH_LANGUAGE=%q is not a text search configuration of this database; it has: %s",
				lang, searchConfigs(ctx, tx))
		}
		if err != nil || current {
			return err
		}
		// The literal came from quote_literal, so the definitions are safe to assemble.
		for _, def := range []string{
			"CREATE OR REPLACE FUNCTION chat_search_config() RETURNS regconfig LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $f$ SELECT %s::regconfig $f$",
			"CREATE OR REPLACE FUNCTION chat_search_vector(body text) RETURNS tsvector LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $f$ SELECT to_tsvector(%s::regconfig, body) $f$",
			"CREATE OR REPLACE FUNCTION chat_search_query(q text) RETURNS tsquery LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $f$ SELECT websearch_to_tsquery(%s::regconfig, q) $f$",
		} {
			if _, err := tx.Exec(ctx, fmt.Sprintf(def, literal)); err != nil {
				return fmt.Errorf("set search language: %w", err)
			}
		}
		// The index holds vectors of the old configuration: rebuilt in the same transaction,
		// no query ever sees the new functions over the old index.
		_, err = tx.Exec(ctx, "REINDEX INDEX messages_search")
		return err
	})
}

// searchConfigs lists the database's text search configurations for an error message.
func searchConfigs(ctx context.Context, tx pgx.Tx) string {
	rows, err := tx.Query(ctx, "SELECT cfgname FROM pg_ts_config ORDER BY cfgname")
	if err != nil {
		return "(the list could not be read: see pg_ts_config)"
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return "(the list could not be read: see pg_ts_config)"
	}
	return strings.Join(names, ", ")
}
