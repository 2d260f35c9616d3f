#!/usr/bin/env bash
# Fetches Debian's own kernels for the matrix (Debian 11's 5.10, Debian 12's
# 6.1 and bookworm-backports' 6.12) with apt-get download, into a cache outside the
# clone, and prints one "NAME PATH-TO-VMLINUZ" line per kernel.
#
# apt runs with a private state directory (its own sources list and package
# lists), so the host's apt configuration is neither needed nor touched.
# A kernel already in the cache is reused as is; KINDLING_KERNEL_REFRESH=1
# looks for newer ones. With no network, cached kernels still work.
set -euo pipefail

cache="${KINDLING_KERNEL_CACHE:-/var/cache/kindling/kernels}"
apt_dir="$cache/apt"
mkdir -p "$cache/boot" "$apt_dir/lists/partial" "$apt_dir/archives/partial" "$apt_dir/etc"

# name  package-name pattern (extended regex over `apt-cache search` names)
kernels=(
  "debian-5.10 ^linux-image-5\.10\.0-[0-9]+-amd64$"
  "debian-6.1  ^linux-image-6\.1\.0-[0-9]+-amd64$"
  "debian-6.12 ^linux-image-6\.12\.[0-9]+\+deb12(\.[0-9]+)?-amd64$"
)

apt_opts=(
  -o "Dir::Etc::SourceList=$apt_dir/etc/sources.list"
  -o "Dir::Etc::SourceParts=$apt_dir/etc/sources.list.d"
  -o "Dir::State::Lists=$apt_dir/lists"
  -o "Dir::Cache=$apt_dir"
  -o "APT::Sandbox::User=root"
)
updated=false
apt_update() {
  $updated && return 0
  mkdir -p "$apt_dir/etc/sources.list.d"
  cat > "$apt_dir/etc/sources.list" <<SOURCES
deb http://deb.debian.org/debian bookworm main
deb http://deb.debian.org/debian bookworm-backports main
deb http://deb.debian.org/debian bullseye main
SOURCES
  echo "fetch-kernels: apt-get update (private state in $apt_dir)" >&2
  apt-get "${apt_opts[@]}" update -qq >&2
  updated=true
}

for k in "${kernels[@]}"; do
  read -r name pattern <<<"$k"
  series="${name#debian-}"
  cached=$(ls "$cache/boot" 2>/dev/null | grep -E "^vmlinuz-${series//./\\.}[.-]" | sort -V | tail -n1 || true)
  if [[ -n "$cached" && "${KINDLING_KERNEL_REFRESH:-0}" != 1 ]]; then
    echo "$name $cache/boot/$cached"
    continue
  fi
  if ! apt_update; then
    [[ -n "$cached" ]] && { echo "$name $cache/boot/$cached"; continue; }
    echo "fetch-kernels: cannot reach the Debian archive and no $name kernel is cached" >&2
    exit 1
  fi
  pkg=$(apt-cache "${apt_opts[@]}" search --names-only "$pattern" | cut -d' ' -f1 | grep -E "$pattern" | sort -V | tail -n1)
  if [[ -z "$pkg" ]]; then
    echo "fetch-kernels: no package matches $pattern" >&2
    exit 1
  fi
  version="${pkg#linux-image-}"
  if [[ ! -f "$cache/boot/vmlinuz-$version" ]]; then
    echo "fetch-kernels: downloading $pkg" >&2
    tmp=$(mktemp -d)
    (cd "$tmp" && apt-get "${apt_opts[@]}" download -qq "$pkg" >&2)
    # Only the kernel image: everything the guest needs is built in
    # (BTF, BPF, tracefs, loopback, the serial console).
    dpkg-deb --fsys-tarfile "$tmp"/*.deb | tar -x -C "$tmp" "./boot/vmlinuz-$version"
    mv "$tmp/boot/vmlinuz-$version" "$cache/boot/"
    rm -rf "$tmp"
  fi
  echo "$name $cache/boot/vmlinuz-$version"
done
