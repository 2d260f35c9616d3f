#!/usr/bin/env python3
"""An HTTP service in the middle of a three-hop chain, for the service-map test.

  chain_service.py REDIS_PORT PG_PORT
      prints "port <P>" once listening. GET /orders/<id> reads order:<id> from
      Redis (raw RESP over one connection) and runs one query on PostgreSQL
      (psycopg2, a real client library), then answers 200 with a JSON body.
"""
import http.server
import json
import socket
import sys

import psycopg2

REDIS_PORT, PG_PORT = int(sys.argv[1]), int(sys.argv[2])


class Redis:
    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port))
        self.f = self.s.makefile("rb")

    def get(self, key):
        k = key.encode()
        self.s.sendall(b"*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n" % (len(k), k))
        line = self.f.readline()
        if line.startswith(b"$-1"):
            return None
        n = int(line[1:])
        data = self.f.read(n + 2)
        return data[:-2].decode()


redis = Redis(REDIS_PORT)
pg = psycopg2.connect(host="127.0.0.1", port=PG_PORT, user="postgres", dbname="postgres")
pg.autocommit = True


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        order = self.path.rsplit("/", 1)[-1]
        cached = redis.get("order:" + order)
        with pg.cursor() as cur:
            cur.execute("SELECT %s::int + 1", (int(order),))
            (value,) = cur.fetchone()
        body = json.dumps({"order": order, "cached": cached, "value": value}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
print("port", server.server_address[1], flush=True)
server.serve_forever()
