// One goroutine per request ("go" on stdin) that burns ~150 ms of CPU time in
// main.burn, waits ~100 ms on a sync.Mutex another goroutine holds while it
// sleeps, and ~200 ms on a TCP read from a peer on 127.0.0.1 that answers
// after 200 ms. Prints "ready PORT" (the peer's port), "goid N" when a
// request starts and what it measured itself when it ends. The
// goroutine-following root test profiles it.
package main

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"time"
	"unsafe"
)

var sink uint64

// CPU time of the process (CLOCK_PROCESS_CPUTIME_ID): the other goroutines
// are idle while burn runs, so this is burn's own CPU time even when the
// machine is busy and the thread waits for a CPU.
func cpuTime() time.Duration {
	var ts syscall.Timespec
	syscall.Syscall(syscall.SYS_CLOCK_GETTIME, 2, uintptr(unsafe.Pointer(&ts)), 0)
	return time.Duration(ts.Nano())
}

//go:noinline
func burn(d time.Duration) {
	end := cpuTime() + d
	x := uint64(1)
	for cpuTime() < end {
		for i := 0; i < 10000; i++ {
			x = x*6364136223846793005 + 1442695040888963407
		}
	}
	sink += x
}

//go:noinline
func lockStep(mu *sync.Mutex, held chan struct{}) time.Duration {
	<-held
	t := time.Now()
	mu.Lock()
	d := time.Since(t)
	mu.Unlock()
	return d
}

//go:noinline
func netStep(addr string) time.Duration {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer c.Close()
	if _, err := c.Write([]byte("ping\n")); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	t := time.Now()
	buf := make([]byte, 16)
	if _, err := c.Read(buf); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	return time.Since(t)
}

func goid() uint64 {
	b := make([]byte, 64)
	b = b[:runtime.Stack(b, false)]
	b = bytes.TrimPrefix(b, []byte("goroutine "))
	n, _ := strconv.ParseUint(string(b[:bytes.IndexByte(b, ' ')]), 10, 64)
	return n
}

// The peer: reads a line, answers 200 ms later.
func peer(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func(c net.Conn) {
			defer c.Close()
			r := bufio.NewReader(c)
			if _, err := r.ReadString('\n'); err != nil {
				return
			}
			time.Sleep(200 * time.Millisecond)
			c.Write([]byte("pong\n"))
		}(c)
	}
}

func request(addr string, done chan<- string) {
	fmt.Printf("goid %d\n", goid())
	cpuStart := cpuTime()
	burn(150 * time.Millisecond)
	cpu := cpuTime() - cpuStart

	var mu sync.Mutex
	held := make(chan struct{})
	go func() {
		mu.Lock()
		close(held)
		time.Sleep(100 * time.Millisecond)
		mu.Unlock()
	}()
	lock := lockStep(&mu, held)
	netw := netStep(addr)
	done <- fmt.Sprintf("done cpu_ms %d lock_ms %d net_ms %d", cpu.Milliseconds(), lock.Milliseconds(), netw.Milliseconds())
}

func main() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	go peer(ln)
	fmt.Println("ready", ln.Addr().(*net.TCPAddr).Port)
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		done := make(chan string)
		go request(ln.Addr().String(), done)
		fmt.Println(<-done)
	}
}
