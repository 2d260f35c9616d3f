#!/usr/bin/env python3
"""TCP peers for the network-health tests (run inside network namespaces).

  netpeer.py server PORT                serves clients: "BULK n\\n" -> n bytes; "ECHO n\\n" -> n bytes
                                        back per request, until the client closes. Prints "ready".
  netpeer.py bulk HOST PORT BYTES       downloads BYTES in one request; prints "done <bytes>".
  netpeer.py echo HOST PORT N SIZE      N request/responses of SIZE bytes on one connection; prints "done".
  netpeer.py hold HOST PORT SECONDS     one connection exchanging 1 small message every 50 ms; prints
                                        "connected <localport>" then "done".
  netpeer.py connect HOST PORT          one blocking connect; prints "ok <ms>" or "error <errno> <ms>".
  netpeer.py rst-server PORT            accepts one client and closes with unread data (a reset).
  netpeer.py rst-client HOST PORT       sends data the server never reads, waits for the reset.
"""
import socket
import sys
import threading
import time


def serve_client(c):
    f = c.makefile("rb")
    try:
        while True:
            line = f.readline()
            if not line:
                return
            cmd, n = line.split()
            n = int(n)
            if cmd == b"BULK":
                chunk = b"b" * 65536
                left = n
                while left:
                    k = min(left, len(chunk))
                    c.sendall(chunk[:k])
                    left -= k
            elif cmd == b"ECHO":
                data = f.read(n)
                c.sendall(b"e" * len(data))
    except (ConnectionResetError, BrokenPipeError):
        pass
    finally:
        c.close()


def server(port):
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("0.0.0.0", port))
    ls.listen(64)
    print("ready", flush=True)
    while True:
        c, _ = ls.accept()
        threading.Thread(target=serve_client, args=(c,), daemon=True).start()


def recv_exact(s, n):
    got = 0
    while got < n:
        b = s.recv(min(65536, n - got))
        if not b:
            raise SystemExit("server closed early")
        got += len(b)
    return got


def main():
    mode = sys.argv[1]
    if mode == "server":
        server(int(sys.argv[2]))
    elif mode == "bulk":
        host, port, n = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
        s = socket.create_connection((host, port))
        s.sendall(b"BULK %d\n" % n)
        print("done", recv_exact(s, n), flush=True)
        s.close()
    elif mode == "echo":
        host, port, n, size = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
        s = socket.create_connection((host, port))
        for _ in range(n):
            s.sendall(b"ECHO %d\n" % size + b"q" * size)
            recv_exact(s, size)
        s.close()
        print("done", flush=True)
    elif mode == "hold":
        host, port, secs = sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
        s = socket.create_connection((host, port))
        print("connected", s.getsockname()[1], flush=True)
        end = time.time() + secs
        while time.time() < end:
            s.sendall(b"ECHO 64\n" + b"q" * 64)
            recv_exact(s, 64)
            time.sleep(0.05)
        s.close()
        print("done", flush=True)
    elif mode == "connect":
        host, port = sys.argv[2], int(sys.argv[3])
        s = socket.socket()
        t = time.time()
        err = s.connect_ex((host, port))
        ms = (time.time() - t) * 1000
        print(("ok %.1f" % ms) if err == 0 else ("error %d %.1f" % (err, ms)), flush=True)
    elif mode == "rst-server":
        ls = socket.socket()
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind(("0.0.0.0", int(sys.argv[2])))
        ls.listen(1)
        print("ready", flush=True)
        c, _ = ls.accept()
        time.sleep(0.3)  # let the client's data arrive unread
        c.close()        # closing with unread data sends a reset
        print("done", flush=True)
    elif mode == "rst-client":
        s = socket.create_connection((sys.argv[2], int(sys.argv[3])))
        s.sendall(b"x" * 1000)
        try:
            s.settimeout(5)
            s.recv(10)
            print("no reset", flush=True)
        except ConnectionResetError:
            print("reset", flush=True)


if __name__ == "__main__":
    main()
