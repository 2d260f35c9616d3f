#!/usr/bin/env bash
# The kernel matrix: `kindling selftest` on the host kernel and, under qemu,
# on each of Debian's kernels (fetch-kernels.sh), from one tiny initramfs
# (busybox-static, the kindling binary and the shared libraries it links).
# Prints a table and exits non-zero when any kernel fails (see docs/KERNELS.md).
#
#   run.sh [--bin PATH] [--expect-fail REGEX] [--no-host] [--only NAME]...
#
# --expect-fail inverts the verdict: every run must fail and its output must
# match REGEX (the broken-program test uses it to prove the matrix can fail).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bin="${CARGO_TARGET_DIR:-$here/../../target}/release/kindling"
expect_fail=""
host=true
only=()
while (($#)); do
  case "$1" in
    --bin) bin="$2"; shift 2 ;;
    --expect-fail) expect_fail="$2"; shift 2 ;;
    --no-host) host=false; shift ;;
    --only) only+=("$2"); shift 2 ;;
    *) echo "usage: $0 [--bin PATH] [--expect-fail REGEX] [--no-host] [--only NAME]" >&2; exit 2 ;;
  esac
done
[[ -x "$bin" ]] || { echo "kernel-matrix: no kindling binary at $bin (build it first)" >&2; exit 1; }
for tool in qemu-system-x86_64 cpio; do
  command -v "$tool" >/dev/null || { echo "kernel-matrix: $tool is missing (make test-deps)" >&2; exit 1; }
done
# The guest has no libc of its own for busybox: it must be the static one.
if [[ ! -x /bin/busybox ]] || ldd /bin/busybox >/dev/null 2>&1; then
  echo "kernel-matrix: /bin/busybox is missing or not static (install busybox-static: make test-deps)" >&2
  exit 1
fi
# Emulation only (no KVM here); a hung guest is cut off after this long.
# KINDLING_GUEST_APPEND adds to the guest's kernel command line; KEY=VALUE
# words there reach the selftest's environment (e.g. KINDLING_LOG=debug).
guest_timeout="${KINDLING_GUEST_TIMEOUT:-300}"

work=$(mktemp -d /tmp/kindling-matrix.XXXXXX)
trap 'rm -rf "$work"' EXIT
logs="${KINDLING_MATRIX_LOGS:-$work/logs}"
mkdir -p "$logs"

build_initramfs() {
  local root="$work/root"
  mkdir -p "$root"/{bin,proc,sys,dev,tmp,etc}
  cp /bin/busybox "$root/bin/busybox"
  cp "$here/init" "$root/init"
  # A stripped copy: the guest needs no debug info.
  objcopy --strip-debug "$bin" "$root/kindling" 2>/dev/null || cp "$bin" "$root/kindling"
  local lib
  for lib in $(ldd "$bin" | grep -o '/[^ ]*'); do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done
  (cd "$root" && find . | cpio -o -H newc --quiet) > "$work/initramfs.cpio"
}

# One row per kernel: name, where, programs loaded, checks passed, verdict.
rows=()
failures=0
record() { # name where logfile exit-status
  local name="$1" where="$2" log="$3" rc="$4"
  local summary programs checks verdict
  summary=$(grep -a '^summary ' "$log" | tail -n1 || true)
  programs=$(sed -nE 's/.*programs_loaded=([0-9]+) programs_total=([0-9]+).*/\1\/\2/p' <<<"$summary")
  checks=$(sed -nE 's/.*checks_passed=([0-9]+) checks_total=([0-9]+).*/\1\/\2/p' <<<"$summary")
  if [[ -z "$expect_fail" ]]; then
    if [[ "$rc" == 0 ]] && grep -q 'result=PASS' <<<"$summary"; then verdict=PASS; else verdict=FAIL; fi
  else
    # Must fail, and say why in the verifier's words.
    if [[ "$rc" != 0 ]] && grep -aqE "$expect_fail" "$log"; then verdict="failed as expected"; else verdict="DID NOT FAIL AS EXPECTED"; fi
  fi
  case "$verdict" in PASS|"failed as expected") ;; *) failures=$((failures + 1))
    echo "---- $name: $log" >&2; grep -av '^program  ok\|^check    ok' "$log" | tail -n 60 >&2 ;; esac
  rows+=("$(printf '%-12s %-7s %-28s %-9s %-8s %s' "$name" "$where" "$(kernel_of "$log")" "${programs:-0/?}" "${checks:-0/?}" "$verdict")")
}
kernel_of() { sed -nE 's/^kindling selftest: kernel (.*)/\1/p' "$1" | tr -d '\r' | head -n1; }
wanted() { ((${#only[@]} == 0)) && return 0; local o; for o in "${only[@]}"; do [[ "$o" == "$1" ]] && return 0; done; return 1; }

if $host && wanted host; then
  echo "kernel-matrix: host kernel $(uname -r)" >&2
  set +e
  "$bin" selftest > "$logs/host.log" 2>&1
  rc=$?
  set -e
  record host host "$logs/host.log" "$rc"
fi

build_initramfs
while read -r name vmlinuz; do
  wanted "$name" || continue
  echo "kernel-matrix: $name ($(basename "$vmlinuz")) under qemu" >&2
  log="$logs/$name.log"
  start=$(date +%s)
  set +e
  timeout "$guest_timeout" qemu-system-x86_64 -accel tcg -cpu max -smp 2 -m 1536M \
    -nographic -no-reboot -monitor none -serial stdio -display none \
    -kernel "$vmlinuz" -initrd "$work/initramfs.cpio" \
    -append "console=ttyS0 quiet loglevel=3 panic=-1 rdinit=/init ${KINDLING_GUEST_APPEND:-}" \
    < /dev/null > "$log" 2>&1
  set -e
  # The guest's own exit status travels on the console.
  rc=$(grep -aoE 'KINDLING-SELFTEST-EXIT=[0-9]+' "$log" | tail -n1 | cut -d= -f2)
  echo "kernel-matrix: $name done in $(( $(date +%s) - start )) s" >&2
  record "$name" qemu "$log" "${rc:-255}"
done < <("$here/fetch-kernels.sh")

echo
printf '%-12s %-7s %-28s %-9s %-8s %s\n' kernel where release programs checks result
printf '%s\n' "${rows[@]}"
if ((failures)); then
  echo "kernel-matrix: $failures kernel(s) failed" >&2
  exit 1
fi
