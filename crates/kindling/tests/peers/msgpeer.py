#!/usr/bin/env python3
"""A request/response peer for Kindling's capture tests.

Exchanges N messages of known sizes over one socket with a chosen syscall
family, so a test can compare what the kernel probes saw with exact ground
truth. Request i is REQ_BASE + i % 50 bytes, response i is RESP_BASE + i % 70.

  msgpeer.py server --proto tcp|udp --family 4|6 --api send|rw|vec|msg -n N
      prints "port <P>" once listening, serves one client, exits.
  msgpeer.py client --proto ... --family ... --api ... -n N --port P [--wait]
      with --wait: connects, prints "connected <localport>", waits for a line on
      stdin before exchanging (to test connections opened before capture).
"""
import argparse
import os
import socket
import sys

REQ_BASE, RESP_BASE = 100, 200


def req_size(i):
    return REQ_BASE + i % 50


def resp_size(i):
    return RESP_BASE + i % 70


def send_all(sock, data, api, peer=None):
    if api == "send":
        if peer is None:
            return sock.send(data)
        return sock.sendto(data, peer)
    if api == "rw":
        return os.write(sock.fileno(), data)
    if api == "vec":
        half = len(data) // 2
        return os.writev(sock.fileno(), [data[:half], data[half:]])
    if api == "msg":
        half = len(data) // 2
        if peer is None:
            return sock.sendmsg([data[:half], data[half:]])
        return sock.sendmsg([data[:half], data[half:]], [], 0, peer)
    raise ValueError(api)


def recv_exact(sock, n, api, udp):
    """Receives one message of n bytes; returns (data, peer)."""
    if udp:
        if api == "msg":
            buf = bytearray(n)
            got, _, _, peer = sock.recvmsg_into([buf])
            return bytes(buf[:got]), peer
        if api in ("send",):
            return sock.recvfrom(n)
        if api == "rw":
            return os.read(sock.fileno(), n), None
        if api == "vec":
            buf = bytearray(n)
            got = os.readv(sock.fileno(), [buf])
            return bytes(buf[:got]), None
    out = b""
    while len(out) < n:
        want = n - len(out)
        if api == "send":
            chunk = sock.recv(want)
        elif api == "rw":
            chunk = os.read(sock.fileno(), want)
        elif api == "vec":
            buf = bytearray(want)
            got = os.readv(sock.fileno(), [buf])
            chunk = bytes(buf[:got])
        else:
            buf = bytearray(want)
            got, _, _, _ = sock.recvmsg_into([buf])
            chunk = bytes(buf[:got])
        if not chunk:
            raise SystemExit("peer closed early")
        out += chunk
    return out, None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["server", "client"])
    ap.add_argument("--proto", default="tcp")
    ap.add_argument("--family", default="4")
    ap.add_argument("--api", default="send")
    ap.add_argument("-n", type=int, default=1000)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--wait", action="store_true")
    a = ap.parse_args()
    fam = socket.AF_INET6 if a.family == "6" else socket.AF_INET
    host = "::1" if a.family == "6" else "127.0.0.1"
    udp = a.proto == "udp"
    kind = socket.SOCK_DGRAM if udp else socket.SOCK_STREAM

    if a.mode == "server":
        ls = socket.socket(fam, kind)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind((host, 0))
        if not udp:
            ls.listen(1)
        print("port", ls.getsockname()[1], flush=True)
        if udp:
            conn = ls
        else:
            conn, _ = ls.accept()
        peer = None
        for i in range(a.n):
            data, p = recv_exact(conn, req_size(i), a.api, udp)
            assert len(data) == req_size(i), (i, len(data))
            if udp:
                peer = p
                if a.api in ("rw", "vec") and peer is None:
                    raise SystemExit("rw/vec UDP servers need a connected socket")
            send_all(conn, b"s" * resp_size(i), a.api, peer if udp else None)
        conn.close()
        return

    s = socket.socket(fam, kind)
    s.connect((host, a.port))
    if a.wait:
        print("connected", s.getsockname()[1], flush=True)
        sys.stdin.readline()
    for i in range(a.n):
        send_all(s, b"c" * req_size(i), a.api)
        data, _ = recv_exact(s, resp_size(i), a.api, udp)
        assert len(data) == resp_size(i), (i, len(data))
    s.close()
    print("done", flush=True)


if __name__ == "__main__":
    main()
