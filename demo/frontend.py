#!/usr/bin/env python3
"""The demo's frontend: an HTTP service in front of the backend.

  frontend.py PORT BACKEND_PORT

GET /shop/orders/<id>    -> backend GET /orders/<id>
GET /shop/checkout/<id>  -> backend GET /payments/<id> (502 when it fails)

Each call starts a W3C trace (traceparent) and passes it on, so the
frontend's and the backend's requests share a trace id in Kindling.
"""
import http.client
import http.server
import json
import os
import socketserver
import sys
import threading

PORT, BACKEND = int(sys.argv[1]), int(sys.argv[2])
local = threading.local()


def backend():
    if not hasattr(local, "conn"):
        local.conn = http.client.HTTPConnection("127.0.0.1", BACKEND, timeout=10)
    return local.conn


def call(path, traceparent):
    for attempt in (0, 1):
        try:
            c = backend()
            c.request("GET", path, headers={"traceparent": traceparent})
            r = c.getresponse()
            return r.status, r.read()
        except (http.client.HTTPException, OSError):
            local.__dict__.pop("conn", None)
            if attempt:
                raise


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def reply(self, code, body):
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        trace = "00-%s-%s-01" % (os.urandom(16).hex(), os.urandom(8).hex())
        parts = self.path.strip("/").split("/")
        if len(parts) == 3 and parts[0] == "shop" and parts[1] in ("orders", "checkout"):
            target = ("/orders/" if parts[1] == "orders" else "/payments/") + parts[2]
            try:
                status, body = call(target, trace)
            except Exception as e:  # the backend is down: say so
                return self.reply(502, json.dumps({"error": str(e)}).encode())
            return self.reply(status if status < 500 else 502, body)
        self.reply(404, b'{"error": "not found"}')

    def log_message(self, *args):
        pass


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


if __name__ == "__main__":
    server = Server(("127.0.0.1", PORT), Handler)
    print("frontend listening on", PORT, flush=True)
    server.serve_forever()
