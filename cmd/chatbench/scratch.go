package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"net/url"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/jackc/pgx/v5"
)

// The few things chatbench needs besides chatd's public HTTP API: tokens chatd accepts, and
// a database for the chatd processes it runs. It imports nothing of chatd itself.

// signToken mints an HS256 token for sub, as the application's backend would: sub, name,
// iat and exp.
func signToken(secret, sub, name string, ttl time.Duration, now time.Time) (string, error) {
	claims := jwt.MapClaims{"sub": sub, "iat": now.Unix(), "exp": now.Add(ttl).Unix()}
	if name != "" {
		claims["name"] = name
	}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(secret))
}

// scratchDatabaseURL names a new database for one run on serverURL's server (`chatd
// migrate` creates it) and returns a function that drops it.
func scratchDatabaseURL(serverURL, prefix string) (dbURL, name string, drop func(), err error) {
	u, err := url.Parse(serverURL)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return "", "", nil, fmt.Errorf("%q is not a postgres:// URL", serverURL)
	}
	suffix := make([]byte, 6)
	_, _ = rand.Read(suffix)
	name = fmt.Sprintf("%s_%x", prefix, suffix)
	drop = func() {
		ctx := context.Background()
		c, err := pgx.Connect(ctx, serverURL)
		if err != nil {
			return
		}
		defer c.Close(ctx)
		_, _ = c.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
	}
	u.Path = "/" + name
	return u.String(), name, drop, nil
}
