# Kindling — build, run and test. See README.md.
SHELL := /bin/bash
CARGO ?= cargo
export PATH := $(HOME)/.cargo/bin:$(PATH)
export CARGO_TARGET_DIR ?= $(CURDIR)/target
BIN := $(CARGO_TARGET_DIR)/release/kindling
ARGS ?=
# The browser tests' Python (playwright, pytest), made by scripts/install-deps.sh test.
BROWSER_VENV ?= /var/cache/kindling-test/browser-venv

.PHONY: all deps test-deps build run test test-unit test-root test-browser kernel-matrix bench clean lint check-root demo

all: build

deps:
	@scripts/install-deps.sh build

test-deps:
	@scripts/install-deps.sh test

build: deps
	$(CARGO) build --release --locked --bin kindling

## run: build and start the agent (API, UI and /metrics on 127.0.0.1:9500).
run: build
	$(BIN) run $(ARGS)

check-root:
	@if [[ $$(id -u) -ne 0 ]]; then echo "make test runs eBPF tests that load kernel programs: run it as root" >&2; exit 1; fi

## test: every test, including the root eBPF tests against real servers.
test: check-root test-deps test-unit test-root kernel-matrix test-browser

test-unit:
	$(CARGO) test --release --locked --workspace --exclude kindling
	$(CARGO) test --release --locked -p kindling --bins
	$(CARGO) test --release --locked -p kindling --test golden

# Root tests load BPF programs and drive real servers; one at a time so their
# timings and servers do not interfere.
test-root:
	$(CARGO) test --release --locked -p kindling --test root -- --test-threads=1

## kernel-matrix: `kindling selftest` on the host kernel and on Debian's 5.10,
## 6.1 and 6.12 kernels under qemu (cached in /var/cache/kindling/kernels),
## then a build with a program the verifier rejects must fail (docs/KERNELS.md).
kernel-matrix: check-root test-deps
	$(CARGO) build --release --locked --bin kindling
	scripts/kernel-matrix/run.sh --bin $(BIN)
	scripts/kernel-matrix/broken.sh

## test-browser: the web UI in Debian's headless chromium (playwright) while
## `kindling run` watches the demo's services; screenshots in
## $(CARGO_TARGET_DIR)/browser-artifacts.
test-browser: check-root test-deps
	$(CARGO) build --release --locked --bin kindling
	KINDLING_BIN=$(BIN) KINDLING_ARTIFACTS=$(CARGO_TARGET_DIR)/browser-artifacts \
	  $(BROWSER_VENV)/bin/python -m pytest -p no:cacheprovider -v tests/browser

## demo: a small shop (load generator -> frontend -> backend -> Redis and
## PostgreSQL, some orders slow) watched by `kindling run`; the UI on
## http://127.0.0.1:9500/ (demo/run.sh says what else it takes).
demo: check-root build
	@scripts/install-deps.sh demo
	KINDLING_BIN=$(BIN) demo/run.sh

## bench: performance ratios measured side by side (see docs/BENCHMARKS.md).
bench: check-root test-deps
	$(CARGO) build --release --locked --bin kindling
	$(CARGO) run --release --locked -p kindling-bench -- $(ARGS)

lint:
	$(CARGO) clippy --release --workspace --all-targets -- -D warnings

clean:
	$(CARGO) clean
