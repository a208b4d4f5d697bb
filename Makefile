# gearbox — build, run and test.
#   make run    install what is missing, build the module, start redis-server with it (127.0.0.1)
#   make test   lint (rustfmt, clippy -D warnings), unit tests (engine + module) and end-to-end
#               tests against real redis-servers
#   make bench  (see benches/) performance figures next to Lua references
# Variables: PORT (6379), MODE (native), MODULE_ARGS (extra load-time name/value pairs),
#            PYO3_PYTHON (a Python 3.13+ with shared libpython; found automatically),
#            CARGO_TARGET_DIR (where cargo builds; default ./target), PYTEST_ARGS.

SHELL := /bin/bash
PORT ?= 6379
MODE ?= native
MODULE_ARGS ?=
PYTEST_ARGS ?=
TARGET_DIR := $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)
MODULE := $(TARGET_DIR)/release/libgearbox.so
VENV := $(CURDIR)/.venv

.PHONY: all deps wasm-python build run test lint unit-test e2e-test venv bench clean

all: build

deps:
	@scripts/install-deps.sh
	@# REQUIREMENTS runs `python -m pip` of the Python gearbox is built against: give it pip if it lacks one.
	@py="$$(scripts/find-python.sh 2>/dev/null)"; if [ -n "$$py" ] && ! "$$py" -m pip --version >/dev/null 2>&1; then \
	  echo "installing pip for $$py (REQUIREMENTS needs it)"; "$$py" -m ensurepip --default-pip >/dev/null; fi

# The Python to build against: found once per make invocation.
python-path = $(shell scripts/find-python.sh)

# The guest component of mode wasm, built with componentize-py (pinned by hash; see wasm-python/).
# Its path is baked into the module at build time (GEARBOX_WASM_PYTHON).
WASM_PYTHON := $(TARGET_DIR)/wasm-python/gearbox-guest.wasm
export GEARBOX_WASM_PYTHON := $(WASM_PYTHON)

wasm-python:
	@PYTHON="$(python-path)" wasm-python/build-guest.sh "$(patsubst %/,%,$(dir $(WASM_PYTHON)))"

build: deps wasm-python
	@py="$(python-path)"; [ -n "$$py" ] || { scripts/find-python.sh; exit 1; }; \
	echo "building gearbox against $$py"; \
	PYO3_PYTHON="$$py" cargo build --release --locked

run: build
	@echo "starting redis-server on 127.0.0.1:$(PORT) with gearbox (mode $(MODE)); connect with: redis-cli -p $(PORT)"
	@echo "try:  redis-cli -p $(PORT) RG.PYEXECUTE \"GB().map(lambda r: r['key']).run()\"   (Ctrl-C stops the server)"
	exec redis-server --port $(PORT) --bind 127.0.0.1 --save "" --appendonly no \
		--loadmodule $(MODULE) mode $(MODE) $(MODULE_ARGS)

$(VENV)/.installed: tests/requirements.txt
	@py="$(python-path)"; [ -n "$$py" ] || { scripts/find-python.sh; exit 1; }; \
	"$$py" -m venv $(VENV) && $(VENV)/bin/pip install --quiet --disable-pip-version-check -r tests/requirements.txt
	@touch $@

venv: $(VENV)/.installed

lint: deps wasm-python
	scripts/check-layers.sh
	cargo fmt --all --check
	@py="$(python-path)"; [ -n "$$py" ] || { scripts/find-python.sh; exit 1; }; \
	PYO3_PYTHON="$$py" cargo clippy --release --locked --workspace --all-targets -- -D warnings

unit-test: deps wasm-python
	@py="$(python-path)"; [ -n "$$py" ] || { scripts/find-python.sh; exit 1; }; \
	PYO3_PYTHON="$$py" cargo test --release --locked --workspace

e2e-test: build venv
	GEARBOX_MODULE=$(MODULE) PATH="$(VENV)/bin:$$PATH" $(VENV)/bin/python -m pytest tests/e2e $(PYTEST_ARGS)

test: lint unit-test e2e-test

bench: build venv
	GEARBOX_MODULE=$(MODULE) $(VENV)/bin/python benches/bench.py $(BENCH_ARGS)

clean:
	cargo clean
	rm -rf $(VENV)
