#!/usr/bin/env python3
"""A gRPC server and client for Kindling's request tests, without protoc.

Messages are raw bytes (no serializers): the service is registered with a
generic handler, the client calls methods by their full path.

  grpcpeer.py server
      serves /pkg.Service/{Echo,Missing,Stream} on 127.0.0.1 (a free port),
      prints "port <P>" once listening, stops when stdin closes.
  grpcpeer.py client --port P --unary N --missing M --streams S --stream-len K [--traceparent TP]
      N unary Echo calls (OK), M unary Missing calls (NOT_FOUND), S
      server-streaming Stream calls of K messages each, one channel (one
      HTTP/2 connection), calls one after the other; the first call of each
      kind carries the traceparent metadata when given. Prints
      "done ok=<n> not_found=<m> stream_messages=<k>".
"""
import argparse
import sys
from concurrent import futures

import grpc

SERVICE = "pkg.Service"


def echo(request, context):
    return b"echo:" + request


def missing(request, context):
    context.abort(grpc.StatusCode.NOT_FOUND, "no such thing")


def stream(request, context):
    n = int(request.decode() or "1")
    for i in range(n):
        yield b"part %d" % i


def serve():
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    handlers = {
        "Echo": grpc.unary_unary_rpc_method_handler(echo),
        "Missing": grpc.unary_unary_rpc_method_handler(missing),
        "Stream": grpc.unary_stream_rpc_method_handler(stream),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    port = server.add_insecure_port("127.0.0.1:0")
    if port == 0:
        sys.exit("could not bind")
    server.start()
    print("port %d" % port, flush=True)
    sys.stdin.read()  # until the test closes our stdin
    server.stop(grace=1).wait()


def client(args):
    md = [("traceparent", args.traceparent)] if args.traceparent else None
    ok = not_found = parts = 0
    with grpc.insecure_channel("127.0.0.1:%d" % args.port) as ch:
        grpc.channel_ready_future(ch).result(timeout=30)
        echo_call = ch.unary_unary("/%s/Echo" % SERVICE)
        missing_call = ch.unary_unary("/%s/Missing" % SERVICE)
        stream_call = ch.unary_stream("/%s/Stream" % SERVICE)
        for i in range(args.unary):
            reply = echo_call(b"hello %d" % i, metadata=md if i == 0 else None, timeout=30)
            assert reply == b"echo:hello %d" % i, reply
            ok += 1
        for i in range(args.missing):
            try:
                missing_call(b"where", metadata=md if i == 0 else None, timeout=30)
            except grpc.RpcError as e:
                assert e.code() == grpc.StatusCode.NOT_FOUND, e
                not_found += 1
        for i in range(args.streams):
            got = list(stream_call(b"%d" % args.stream_len, metadata=md if i == 0 else None, timeout=30))
            assert len(got) == args.stream_len, got
            parts += len(got)
    print("done ok=%d not_found=%d stream_messages=%d" % (ok, not_found, parts), flush=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["server", "client"])
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--unary", type=int, default=0)
    p.add_argument("--missing", type=int, default=0)
    p.add_argument("--streams", type=int, default=0)
    p.add_argument("--stream-len", type=int, default=3)
    p.add_argument("--traceparent", default="")
    args = p.parse_args()
    if args.mode == "server":
        serve()
    else:
        client(args)


if __name__ == "__main__":
    main()
