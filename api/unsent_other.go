//go:build !linux

package api

import "net"

// limitUnsent does nothing here: TCP_NOTSENT_LOWAT is Linux's (and the deployment's).
func limitUnsent(*net.TCPConn) {}
