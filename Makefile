# camhub: two commands set up a fresh Debian 12 machine.
#   make run    installs what is missing, builds, serves the built-in demo cameras
#   make test   the same setup, then fmt, clippy and every test
#   make deb    the same setup, then a release build packaged as target/debian/camhub_*.deb
# Other targets: make deps, make build, make bench, make clips.

SHELL := /bin/bash
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
LISTEN ?= 127.0.0.1:8080

# Build: FFmpeg, TurboJPEG and OpenSSL (WebRTC's DTLS) headers, clang for bindgen,
# GStreamer's RTSP server headers (the restream; its plugins, and libav's decoders for
# the rtspsrc client test, serve the tests). dpkg-dev: the Debian package (make deb).
# Tests: ffmpeg (reference decodes), GStreamer's RTSP server with its Python
# bindings (a real camera on loopback), Chromium (the dashboard test drives it with
# playwright-core), redis-server (each Redis test starts its own).
APT_PACKAGES := pkg-config clang libclang-dev \
	libavcodec-dev libavformat-dev libavutil-dev libswscale-dev libswresample-dev \
	libturbojpeg0-dev ffmpeg \
	python3 python3-venv python3-gi gir1.2-gstreamer-1.0 gir1.2-gst-rtsp-server-1.0 \
	gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad \
	gstreamer1.0-plugins-ugly chromium redis-server libssl-dev mosquitto mosquitto-clients \
	libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev libgstrtspserver-1.0-dev gstreamer1.0-libav dpkg-dev

VENV := .venv

.PHONY: run test deps build deb bench clips check-rust

deps: check-rust
	@missing=$$(for p in $(APT_PACKAGES); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:" $$missing; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi

check-rust:
	@command -v cargo >/dev/null || { echo "camhub needs a Rust toolchain (1.89 or newer): see https://rustup.rs"; exit 1; }
	@cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt
	@cargo clippy --version >/dev/null 2>&1 || rustup component add clippy

build: deps
	cargo build --release

run: build
	./target/release/camhub serve --listen $(LISTEN)

# The Debian package (packaging/build-deb.sh; README: Install): the binary, a
# systemd unit, /etc/camhub/cameras.yaml, completions; Depends computed from what
# the binary links. `apt install ./target/debian/camhub_*.deb` installs it.
deb: build
	packaging/build-deb.sh target/release/camhub target/debian

# Python test dependencies (the reference Prometheus parser, ...) in a venv of
# Debian's Python, so nothing touches the system's packages.
$(VENV)/.ok: tests/requirements.txt | deps
	/usr/bin/python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -r tests/requirements.txt
	touch $@

# The Python client (clients/python), as users install it.
CLIENT_OK := $(VENV)/.client-ok
# Its native module (clients/python/src, from crates/ring) is built by maturin with
# the Rust toolchain already here, into this workspace's target/ (shared builds).
CLIENT_SRC := clients/python/pyproject.toml clients/python/Cargo.toml $(wildcard clients/python/camhub/*.py) \
	$(wildcard clients/python/src/*.rs) $(wildcard crates/ring/src/*.rs crates/ring/src/*/*.rs) crates/ring/Cargo.toml
$(CLIENT_OK): $(VENV)/.ok $(CLIENT_SRC)
	$(VENV)/bin/pip install -q --disable-pip-version-check --no-deps --force-reinstall ./clients/python
	touch $@

# playwright-core only (it drives Debian's Chromium; no browser download).
NODE_OK := tests/support/node_modules/.ok
$(NODE_OK): tests/support/package-lock.json | deps
	@command -v npm >/dev/null || { $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends nodejs npm; }
	npm ci --prefix tests/support --no-audit --no-fund --loglevel=error
	touch $@

test: deps $(VENV)/.ok $(CLIENT_OK) $(NODE_OK)
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo test --lib --bins --tests
	cargo test -p camhub-ring
	CAMHUB_BIN=target/debug/camhub $(VENV)/bin/python -m pytest -q -p no:cacheprovider clients/python/tests

bench: deps $(CLIENT_OK) $(NODE_OK)
	cargo bench --bench snapshot $(BENCH_ARGS)
	cargo bench --bench fanout $(BENCH_ARGS)
	cargo bench --bench outputs $(BENCH_ARGS)
	cargo bench --bench whep $(BENCH_ARGS)
	cargo bench --bench restream $(BENCH_ARGS)
	cargo bench --bench cluster $(BENCH_ARGS)
	cargo bench --bench load $(BENCH_ARGS)
	cargo bench --bench fleet $(BENCH_ARGS)

clips: deps
	scripts/make-clips.sh
