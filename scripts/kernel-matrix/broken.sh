#!/usr/bin/env bash
# Proves the kernel matrix can fail: builds kindling with the test-only
# `broken-program` feature (a BPF program the verifier rejects, see
# kindling.bpf.c) in its own target directory, then runs the matrix on the
# host and on Debian's 6.1 kernel expecting `kindling selftest` to fail there
# with the verifier's own message about that program.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here/../.."
target="${CARGO_TARGET_DIR:-$PWD/target}/broken-program"
# The dev profile: this binary only has to load programs, and builds faster.
CARGO_TARGET_DIR="$target" cargo build --locked --bin kindling --features broken-program
# kd_broken dereferences a number: the verifier names the register and the
# access ("R0 invalid mem access 'scalar'", 'inv' on older kernels).
exec "$here/run.sh" --bin "$target/debug/kindling" --only host --only debian-6.1 \
  --expect-fail "rejected BPF program kd_broken: .*invalid mem access"
