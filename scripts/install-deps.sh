#!/usr/bin/env bash
# Installs what Kindling needs on a fresh Debian 12 machine, only what is missing.
#   install-deps.sh build   toolchain for the BPF programs and the agent
#   install-deps.sh test    + the real servers and clients the tests drive
#   install-deps.sh demo    + what `make demo` runs (Redis, PostgreSQL, psycopg2)
set -euo pipefail

build_pkgs=(clang llvm libelf-dev zlib1g-dev pkg-config make gcc libbpf-dev)
# Servers and clients of the root tests (tests/root): nginx + wrk + curl,
# redis + redis-benchmark, PostgreSQL 15 + pgbench (server binaries in
# /usr/lib/postgresql/15/bin), MariaDB + mysqlslap, dnsmasq + dig, python grpcio;
# qemu, busybox-static and cpio boot the kernel matrix (scripts/kernel-matrix).
test_pkgs=(nginx wrk curl python3 iproute2 util-linux procps
  redis-server redis-tools postgresql-15 postgresql-client-15 mariadb-server-core mariadb-client
  dnsmasq-base bind9-dnsutils python3-grpcio python3-psycopg2 prometheus
  qemu-system-x86 busybox-static cpio)
# Profiling (tests/root/profile.rs): gcc builds the C subjects; a Go and a Java
# HTTP server are profiled under wrk; `go tool pprof` reads our pprof output;
# python3-jsonschema checks speedscope output against the schema npm fetches
# below; bcc's offcputime is the off-CPU cross-check (it needs kprobes and
# kernel headers: where it cannot run, the test says so).
test_pkgs+=(gcc golang-go openjdk-17-jdk-headless bpfcc-tools python3-jsonschema)

# The demo (demo/run.sh) and the browser tests (tests/browser: Debian's
# chromium driven by playwright from PyPI, in a venv made below).
demo_pkgs=(python3 python3-psycopg2 redis-server redis-tools postgresql-15 postgresql-client-15 util-linux)
test_pkgs+=("${demo_pkgs[@]}" chromium python3-venv fonts-dejavu-core)

want=("${build_pkgs[@]}")
if [[ "${1:-build}" == "test" ]]; then
  want+=("${test_pkgs[@]}")
elif [[ "${1:-build}" == "demo" ]]; then
  want+=("${demo_pkgs[@]}")
fi

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "install-deps: missing packages (${missing[*]}); run as root to install them" >&2
    exit 1
  fi
  echo "install-deps: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # Services must not start by themselves: tests start their own instances.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The speedscope file format's JSON schema, from the speedscope npm package.
schema=/var/cache/kindling-test/speedscope/file-format-schema.json
if [[ "${1:-build}" == "test" && ! -s $schema ]]; then
  # Any npm will do (a NodeSource node ships its own; else Debian's).
  command -v npm >/dev/null 2>&1 || apt-get install -y -qq --no-install-recommends npm >/dev/null
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent speedscope@1.25.0 >/dev/null \
    && tar xzf speedscope-1.25.0.tgz package/dist/release/file-format-schema.json) \
    || { echo "install-deps: cannot fetch the speedscope schema with npm" >&2; rm -rf "$tmp"; exit 1; }
  mkdir -p "$(dirname "$schema")" && cp "$tmp/package/dist/release/file-format-schema.json" "$schema"
  rm -rf "$tmp"
fi

# The browser tests' venv (tests/browser/requirements.txt), remade when that file changes.
venv=/var/cache/kindling-test/browser-venv
reqs="$(dirname "$0")/../tests/browser/requirements.txt"
if [[ "${1:-build}" == "test" ]] && ! cmp -s "$reqs" "$venv/requirements.txt"; then
  rm -rf "$venv"
  /usr/bin/python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$reqs" \
    || { echo "install-deps: cannot install the browser tests' packages (pip)" >&2; rm -rf "$venv"; exit 1; }
  cp "$reqs" "$venv/requirements.txt"
fi

if ! command -v cargo >/dev/null 2>&1 && [[ -x "$HOME/.cargo/bin/cargo" ]]; then
  export PATH="$HOME/.cargo/bin:$PATH"
fi
command -v cargo >/dev/null 2>&1 || { echo "install-deps: cargo not found (install Rust with rustup)" >&2; exit 1; }
