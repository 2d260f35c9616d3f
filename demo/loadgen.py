#!/usr/bin/env python3
"""The demo's users: a steady, bounded stream of requests to the frontend.

  loadgen.py FRONTEND_PORT [RATE_PER_S] [DURATION_S]

Runs until DURATION_S (0: until stopped) at about RATE_PER_S requests a
second from 4 threads, only to 127.0.0.1.
"""
import http.client
import random
import sys
import threading
import time

PORT = int(sys.argv[1])
RATE = float(sys.argv[2]) if len(sys.argv) > 2 else 20.0
DURATION = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
THREADS = 4
end = time.time() + DURATION if DURATION > 0 else float("inf")


def user():
    conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=10)
    interval = THREADS / RATE
    while time.time() < end:
        t = time.time()
        oid = random.randint(1, 400)
        path = "/shop/checkout/%d" % oid if random.random() < 0.2 else "/shop/orders/%d" % oid
        try:
            conn.request("GET", path)
            conn.getresponse().read()
        except (http.client.HTTPException, OSError):
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=10)
            time.sleep(0.5)
        time.sleep(max(0.0, interval - (time.time() - t)))


threads = [threading.Thread(target=user, daemon=True) for _ in range(THREADS)]
for t in threads:
    t.start()
for t in threads:
    t.join()
