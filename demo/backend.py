#!/usr/bin/env python3
"""The demo's backend: an HTTP API over Redis and PostgreSQL.

  backend.py PORT REDIS_PORT PG_PORT

GET /orders/<id>    the order from the Redis cache; ids that are multiples
                    of 8 are "big accounts" the cache does not hold: their
                    order history is summed by a query on an unindexed column
                    of PostgreSQL, which takes a few hundred milliseconds.
                    That is the slowness the UI reveals (the slow SQL on the
                    postgres edge, the waiting in the trace-profile).
GET /payments/<id>  answers 503 for about one call in 20 (a flaky dependency).
"""
import http.server
import json
import random
import socket
import socketserver
import sys
import threading

import psycopg2

PORT, REDIS_PORT, PG_PORT = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
local = threading.local()


class Redis:
    """Raw RESP over one connection per thread (no client library needed)."""

    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port))
        self.f = self.s.makefile("rb")

    def call(self, *args):
        parts = [b"*%d\r\n" % len(args)]
        for a in args:
            a = str(a).encode()
            parts.append(b"$%d\r\n%s\r\n" % (len(a), a))
        self.s.sendall(b"".join(parts))
        line = self.f.readline()
        if line.startswith(b"$"):
            n = int(line[1:])
            return None if n < 0 else self.f.read(n + 2)[:-2].decode()
        return line[1:].strip().decode()


def conns():
    if not hasattr(local, "redis"):
        local.redis = Redis(REDIS_PORT)
        local.pg = psycopg2.connect(host="127.0.0.1", port=PG_PORT, user="postgres", dbname="shop")
        local.pg.autocommit = True
    return local.redis, local.pg


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def reply(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        parts = self.path.strip("/").split("/")
        try:
            if len(parts) == 2 and parts[0] == "orders":
                return self.order(int(parts[1]))
            if len(parts) == 2 and parts[0] == "payments":
                if random.random() < 0.05:
                    return self.reply(503, {"error": "payment provider unavailable"})
                return self.reply(200, {"payment": parts[1], "status": "authorized"})
        except ValueError:
            return self.reply(400, {"error": "bad id"})
        self.reply(404, {"error": "no such resource"})

    def order(self, oid):
        redis, pg = conns()
        with pg.cursor() as cur:
            cur.execute("SELECT id, status FROM orders WHERE id = %s", (oid,))
            row = cur.fetchone()
        if row is None:
            return self.reply(404, {"error": "no order %d" % oid})
        cached = redis.call("GET", "order:%d" % oid)
        if cached is not None:
            return self.reply(200, json.loads(cached))
        # A big account: its history is summed on an unindexed column.
        with pg.cursor() as cur:
            cur.execute("SELECT count(*), coalesce(sum(qty), 0) FROM order_items WHERE customer_id = %s", (oid,))
            items, qty = cur.fetchone()
        self.reply(200, {"order": oid, "status": row[1], "items": items, "qty": int(qty)})

    def log_message(self, *args):
        pass


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


if __name__ == "__main__":
    server = Server(("127.0.0.1", PORT), Handler)
    print("backend listening on", PORT, flush=True)
    server.serve_forever()
