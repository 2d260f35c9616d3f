#!/usr/bin/env bash
# `make demo`: a small shop on this machine, watched by `kindling run`.
#
#   loadgen.py --HTTP--> frontend.py --HTTP--> backend.py --> Redis (cache)
#                                                         --> PostgreSQL
#
# Orders whose id is a multiple of 8 miss the cache and run a slow query on
# an unindexed column: in the UI the frontend -> backend edge has a slow p99,
# its slowest requests are /orders/{id}, and the backend -> postgres edge
# shows the slow SQL (`SELECT count(*), ... WHERE customer_id = ?`). About
# one checkout in 20 fails (503 from the backend, 502 from the frontend).
#
# Environment (all optional):
#   KINDLING_BIN       the agent binary (default target/release/kindling)
#   KINDLING_LISTEN    where the UI and API listen (default 127.0.0.1:9500)
#   KINDLING_DATA_DIR  the store (default ./kindling-data)
#   DEMO_RATE          requests per second from the load generator (default 20)
#   DEMO_DURATION      stop after this many seconds (default 0: at Ctrl-C)
#   DEMO_AGENT=0       start only the services (tests start the agent themselves)
#
# Everything runs on 127.0.0.1 from a temporary directory and is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BIN=${KINDLING_BIN:-$ROOT/target/release/kindling}
LISTEN=${KINDLING_LISTEN:-127.0.0.1:9500}
DATA=${KINDLING_DATA_DIR:-$ROOT/kindling-data}
RATE=${DEMO_RATE:-20}
DURATION=${DEMO_DURATION:-0}
AGENT=${DEMO_AGENT:-1}
PY=/usr/bin/python3
PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)

die() { echo "demo: $*" >&2; exit 1; }
[[ $(id -u) -eq 0 ]] || die "kindling run loads eBPF programs: run as root (sudo make demo)"
[[ -x $PGBIN/postgres ]] || die "PostgreSQL is missing: scripts/install-deps.sh test"
command -v redis-server >/dev/null || die "redis-server is missing: scripts/install-deps.sh test"
$PY -c 'import psycopg2' 2>/dev/null || die "python3-psycopg2 is missing: scripts/install-deps.sh test"
[[ $AGENT == 0 || -x $BIN ]] || die "no agent binary at $BIN (make build)"

work=$(mktemp -d /tmp/kindling-demo.XXXXXX)
chmod 755 "$work"
pids=()
pg_pid=""

cleanup() {
  trap - EXIT INT TERM
  local i
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do kill -TERM "${pids[i]}" 2>/dev/null || true; done
  [[ -n $pg_pid ]] && kill -INT "$pg_pid" 2>/dev/null || true
  for pid in "${pids[@]}" $pg_pid; do
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { $PY -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_port() {
  local _
  for _ in $(seq 1 600); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "demo: nothing listens on port $1 ($2); its log:" >&2
  cat "$work/$2.log" >&2 || true
  exit 1
}

if [[ $AGENT != 0 ]]; then
  "$BIN" run --listen "$LISTEN" --data-dir "$DATA" 2>"$work/kindling.log" &
  pids+=($!)
  wait_port "${LISTEN##*:}" kindling
fi

redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --daemonize no \
  --protected-mode no --dir "$work" >"$work/redis.log" 2>&1 &
pids+=($!)

pg_port=$(free_port)
install -d -o postgres -g postgres "$work/pg"
setpriv --reuid=postgres --regid=postgres --init-groups -- "$PGBIN/initdb" -D "$work/pg/data" --auth=trust \
  --username=postgres -E UTF8 --no-locale --no-sync >"$work/initdb.log" 2>&1 || { cat "$work/initdb.log" >&2; exit 1; }
setpriv --reuid=postgres --regid=postgres --init-groups -- "$PGBIN/postgres" -D "$work/pg/data" -p "$pg_port" \
  -c listen_addresses=127.0.0.1 -c "unix_socket_directories=$work/pg" -c fsync=off -c synchronous_commit=off \
  -c max_parallel_workers_per_gather=0 >"$work/postgres.log" 2>&1 &
pg_pid=$!
wait_port "$redis_port" redis
wait_port "$pg_port" postgres

psql() { "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$pg_port" -U postgres "$@"; }
for _ in $(seq 1 100); do psql -d postgres -c 'SELECT 1' >/dev/null 2>&1 && break; sleep 0.2; done
psql -d postgres -c 'CREATE DATABASE shop'
psql -d shop <<'SQL'
CREATE TABLE orders (id int PRIMARY KEY, status text NOT NULL);
INSERT INTO orders SELECT g, 'shipped' FROM generate_series(1, 400) g;
-- No index on customer_id: summing one customer's items scans the table.
CREATE TABLE order_items (id bigserial PRIMARY KEY, customer_id int NOT NULL, qty int NOT NULL);
INSERT INTO order_items (customer_id, qty) SELECT g % 400 + 1, g % 5 FROM generate_series(1, 1500000) g;
VACUUM ANALYZE;
SQL
for id in $(seq 1 400); do
  (( id % 8 == 0 )) && continue
  printf "SET order:%d '{\"order\":%d,\"status\":\"shipped\",\"cached\":true}'\n" "$id" "$id"
done | redis-cli -h 127.0.0.1 -p "$redis_port" >/dev/null

backend_port=$(free_port)
$PY demo/backend.py "$backend_port" "$redis_port" "$pg_port" >"$work/backend.log" 2>&1 &
pids+=($!)
wait_port "$backend_port" backend
frontend_port=$(free_port)
$PY demo/frontend.py "$frontend_port" "$backend_port" >"$work/frontend.log" 2>&1 &
pids+=($!)
wait_port "$frontend_port" frontend
$PY demo/loadgen.py "$frontend_port" "$RATE" "$DURATION" >"$work/loadgen.log" 2>&1 &
loadgen=$!
pids+=($loadgen)

echo "demo: frontend=$frontend_port backend=$backend_port redis=$redis_port postgres=$pg_port"
echo "demo: ready"
if [[ $AGENT != 0 ]]; then
  echo "Kindling UI: http://$LISTEN/  (store: $DATA) — the map fills within a minute; Ctrl-C stops everything."
fi
if [[ $DURATION != 0 ]]; then
  wait "$loadgen" || true
else
  wait "${pids[0]}" || true
fi
