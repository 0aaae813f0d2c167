# Two commands for a newcomer on a fresh Debian 12 machine (as root):
#   make demo   run the product on its embedded default (the example site)
#   make test   install everything and run the whole test suite
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEBS := mosquitto mosquitto-clients nftables dnsmasq-base tcpdump wireshark-common iproute2 iperf3 age \
        openssl git openssh-client gnupg python3-venv tmux procps systemd
PYTEST_ARGS ?=

.PHONY: demo test lint unit deps bench golden clean

$(VENV)/.deps: pyproject.toml
	@if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  missing=""; for p in $(DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	  if [ -n "$$missing" ]; then echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; fi; \
	fi
	@[ -x $(BIN)/python ] || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -e '.[dev]'
	@touch $@

deps: $(VENV)/.deps

demo: deps
	$(BIN)/cell demo

lint: deps
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

unit: deps
	$(BIN)/pytest -q $(PYTEST_ARGS)

test: lint unit

golden: deps
	$(BIN)/pytest -q tests/test_golden.py tests/test_console_golden.py --update-golden

bench: deps
	$(BIN)/python bench/compile.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
