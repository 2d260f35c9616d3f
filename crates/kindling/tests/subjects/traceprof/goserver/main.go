// Trace-profiling subject (Go, net/http): `GET /work` spends, in the
// goroutine serving the request,
//
//	~150 ms on-CPU in main.burnCPU (process CPU time),
//	~200 ms waiting on PostgreSQL (`SELECT pg_sleep(0.2)`, wire protocol v3
//	spoken by hand over one connection per server, opened on first use),
//	~100 ms blocked on a sync.Mutex a helper goroutine holds,
//
// then answers 200.
// Usage: goserver PG_PORT. Prints its port on stdout; per request, its own
// timings on stderr:
//
//	timing trace=<id|-> cpu_ms X burn_wall_ms X pg_ms X lock_ms X total_ms X
package main

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"
)

var sink uint64

// processCPU is this process's CPU time (user + system). The goroutine may
// move between OS threads, so a thread clock would not do; the rest of the
// process is idle while a request burns (requests come one at a time).
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		panic(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// burnCPU is busy until `d` of CPU time is spent (so a loaded machine
// stretches it in wall time, not shortens it); the clock is read every ~100k
// iterations so the loop, not getrusage, is the hot code.
//
//go:noinline
func burnCPU(d time.Duration) {
	start := processCPU()
	x := uint64(88172645463325252)
	for processCPU()-start < d {
		for i := 0; i < 100000; i++ {
			x ^= x << 13
			x ^= x >> 7
			x ^= x << 17
		}
		sink = x
	}
}

// ---------------------------------------------------------------- PostgreSQL

type pgConn struct {
	c net.Conn
	r *bufio.Reader
}

var (
	pgPort string
	pgMu   sync.Mutex // guards pg; uncontended when requests come one at a time
	pg     *pgConn
)

func pgConnect() (*pgConn, error) {
	c, err := net.Dial("tcp", "127.0.0.1:"+pgPort)
	if err != nil {
		return nil, err
	}
	params := []byte("user\x00postgres\x00database\x00postgres\x00\x00")
	msg := make([]byte, 8, 8+len(params))
	binary.BigEndian.PutUint32(msg, uint32(8+len(params)))
	binary.BigEndian.PutUint32(msg[4:], 196608) // protocol 3.0
	if _, err := c.Write(append(msg, params...)); err != nil {
		c.Close()
		return nil, err
	}
	p := &pgConn{c: c, r: bufio.NewReader(c)}
	if err := p.untilReady(); err != nil {
		c.Close()
		return nil, err
	}
	return p, nil
}

// untilReady reads backend messages until ReadyForQuery; an error response
// or an auth method other than trust is an error.
func (p *pgConn) untilReady() error {
	for {
		var hdr [5]byte
		if _, err := io.ReadFull(p.r, hdr[:]); err != nil {
			return err
		}
		n := binary.BigEndian.Uint32(hdr[1:])
		if n < 4 || n > 1<<24 {
			return fmt.Errorf("bad postgres message length %d", n)
		}
		body := make([]byte, n-4)
		if _, err := io.ReadFull(p.r, body); err != nil {
			return err
		}
		switch hdr[0] {
		case 'E':
			return errors.New("postgres error: " + strings.ReplaceAll(string(body), "\x00", " "))
		case 'R':
			if len(body) < 4 || binary.BigEndian.Uint32(body) != 0 {
				return errors.New("postgres asks for an auth method other than trust")
			}
		case 'Z':
			return nil
		}
	}
}

func pgQuery(sql string) error {
	pgMu.Lock()
	defer pgMu.Unlock()
	if pg == nil {
		p, err := pgConnect()
		if err != nil {
			return err
		}
		pg = p
	}
	q := append([]byte(sql), 0)
	msg := make([]byte, 5, 5+len(q))
	msg[0] = 'Q'
	binary.BigEndian.PutUint32(msg[1:], uint32(4+len(q)))
	if _, err := pg.c.Write(append(msg, q...)); err != nil {
		return err
	}
	return pg.untilReady()
}

// ---------------------------------------------------------------- lock

var contended sync.Mutex

// waitOnLock: a helper goroutine takes the mutex and holds it `d`; we block
// acquiring it. Returns the time blocked.
func waitOnLock(d time.Duration) time.Duration {
	held, done := make(chan struct{}), make(chan struct{})
	go func() {
		contended.Lock()
		close(held)
		time.Sleep(d)
		contended.Unlock()
		close(done)
	}()
	<-held
	t0 := time.Now()
	contended.Lock()
	blocked := time.Since(t0)
	contended.Unlock()
	<-done
	return blocked
}

// ---------------------------------------------------------------- HTTP

func traceID(r *http.Request) string {
	parts := strings.Split(r.Header.Get("traceparent"), "-")
	if len(parts) < 2 {
		return "-"
	}
	return parts[1]
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }

func work(w http.ResponseWriter, r *http.Request) {
	t0, c0 := time.Now(), processCPU()
	burnCPU(150 * time.Millisecond)
	t1, c1 := time.Now(), processCPU()
	if err := pgQuery("SELECT pg_sleep(0.2)"); err != nil {
		fmt.Fprintln(os.Stderr, "goserver:", err)
		http.Error(w, err.Error(), 500)
		return
	}
	t2 := time.Now()
	blocked := waitOnLock(100 * time.Millisecond)
	t3 := time.Now()
	fmt.Fprint(w, "done\n")
	fmt.Fprintf(os.Stderr, "timing trace=%s cpu_ms %.1f burn_wall_ms %.1f pg_ms %.1f lock_ms %.1f total_ms %.1f\n",
		traceID(r), ms(c1-c0), ms(t1.Sub(t0)), ms(t2.Sub(t1)), ms(blocked), ms(t3.Sub(t0)))
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: goserver PG_PORT")
		os.Exit(2)
	}
	pgPort = os.Args[1]
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(ln.Addr().(*net.TCPAddr).Port)
	http.HandleFunc("/work", work)
	if err := http.Serve(ln, nil); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
