// An HTTP server whose handler burns CPU in main.fib; prints its port.
// The profiling root test loads it and looks for main.* frames.
package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
)

//go:noinline
func fib(n int) int {
	if n < 2 {
		return n
	}
	return fib(n-1) + fib(n-2)
}

func handler(w http.ResponseWriter, r *http.Request) {
	fmt.Fprintf(w, "%d\n", fib(24))
}

func main() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(ln.Addr().(*net.TCPAddr).Port)
	http.HandleFunc("/", handler)
	if err := http.Serve(ln, nil); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
