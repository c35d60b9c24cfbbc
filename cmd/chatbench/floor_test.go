package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
)

// BenchmarkTransportFloor measures what the load of throughput.sh costs with no chat service
// behind it: chatbench's shape (100 pairs, each message a POST of a 100-byte body answered
// 201 with the message, then delivered to the sender's and the recipient's streams as
// text/event-stream) between a gin server and net/http clients in this process, over
// loopback. No database, no authentication, no log: every message costs at least this on
// the machine that runs chatd and the load tool, before PostgreSQL stores it. cpu-µs/msg is
// the process's user and system CPU per message, loopback's kernel work included (it runs
// in the writer's system call). README, "Throughput over instances", compares it with
// pgbench's whole transaction.
func BenchmarkTransportFloor(b *testing.B) {
	const pairs = 100
	gin.SetMode(gin.ReleaseMode)
	streams := make([]chan []byte, 2*pairs)
	for i := range streams {
		streams[i] = make(chan []byte, 1024)
	}
	r := gin.New()
	r.GET("/streams/:n", func(c *gin.Context) {
		n, err := strconv.Atoi(c.Param("n"))
		if err != nil || n < 0 || n >= len(streams) {
			c.Status(http.StatusNotFound)
			return
		}
		c.Header("Content-Type", "text/event-stream")
		c.Status(http.StatusOK)
		c.Writer.Flush()
		for {
			select {
			case <-c.Request.Context().Done():
				return
			case f := <-streams[n]:
				if _, err := c.Writer.Write(f); err != nil {
					return
				}
				for more := true; more; { // what else is queued goes in the same write
					select {
					case f := <-streams[n]:
						_, _ = c.Writer.Write(f)
					default:
						more = false
					}
				}
				c.Writer.Flush()
			}
		}
	})
	var seq atomic.Int64
	r.POST("/pairs/:n/messages", func(c *gin.Context) {
		var req struct {
			Body     string `json:"body"`
			ClientID string `json:"client_id"`
		}
		n, err := strconv.Atoi(c.Param("n"))
		if err != nil || n < 0 || n >= pairs || c.ShouldBindJSON(&req) != nil {
			c.Status(http.StatusBadRequest)
			return
		}
		s := seq.Add(1)
		msg := gin.H{"id": "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", "conversation_id": "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5c",
			"seq": s, "sender_id": fmt.Sprintf("user-%d-a", n), "body": req.Body, "client_id": req.ClientID,
			"created_at": time.Now(), "edited_at": nil, "deleted_at": nil, "kind": "user", "attachments": []string{}}
		c.JSON(http.StatusCreated, msg)
		var f bytes.Buffer
		fmt.Fprintf(&f, "id: %d\nevent: message\ndata: ", s)
		_ = json.NewEncoder(&f).Encode(gin.H{"conversation_id": msg["conversation_id"], "message": msg})
		f.WriteString("\n")
		streams[2*n] <- f.Bytes()
		streams[2*n+1] <- f.Bytes()
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: r}
	go srv.Serve(ln)
	defer srv.Close()
	base := "http://" + ln.Addr().String()

	var delivered atomic.Int64
	var readers sync.WaitGroup
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 512}}
	for i := range streams {
		resp, err := client.Get(fmt.Sprintf("%s/streams/%d", base, i))
		if err != nil {
			b.Fatal(err)
		}
		readers.Add(1)
		go func() {
			defer readers.Done()
			defer resp.Body.Close()
			sc := bufio.NewScanner(resp.Body)
			for sc.Scan() {
				if strings.HasPrefix(sc.Text(), "data: ") {
					delivered.Add(1)
				}
			}
		}()
	}
	body := fmt.Appendf(nil, `{"body":%q,"client_id":"c"}`, strings.Repeat("x", 100))
	var next atomic.Int64
	before := cpuTime()
	start := time.Now()
	b.SetParallelism(256) // 512 POSTs in flight on 2 cores, as in throughput.sh
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			n := next.Add(1) % pairs
			resp, err := client.Post(fmt.Sprintf("%s/pairs/%d/messages", base, n), "application/json", bytes.NewReader(body))
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusCreated {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
	for delivered.Load() < 2*int64(b.N) && time.Since(start) < time.Minute {
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
	elapsed, cpu := time.Since(start), cpuTime()-before
	if got := delivered.Load(); got != 2*int64(b.N) {
		b.Fatalf("delivered %d of %d", got, 2*b.N)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/msg")
	srv.Close()
	readers.Wait()
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
