# Backstop: `make run` for the dashboard with the demo, `make test` for every check.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000

# Django 6.1 needs Python 3.12+: look on PATH, then in pyenv's versions.
define FIND_PYTHON
ok() { "$$1" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; }; \
for c in python3.14 python3.13 python3.12 python3; do \
  p=$$(command -v $$c 2>/dev/null) && ok "$$p" && { echo "$$p"; exit 0; }; \
done; \
root=$$(pyenv root 2>/dev/null || echo "$$HOME/.pyenv"); \
for p in $$(ls -d "$$root"/versions/3.*/bin/python3 2>/dev/null | sort -V -r); do \
  ok "$$p" && { echo "$$p"; exit 0; }; \
done; exit 1
endef

CHROMIUM := /usr/bin/chromium

.PHONY: run test lint db demo runner temporal screenshots clean

$(VENV)/.installed: pyproject.toml
	@py=$$($(FIND_PYTHON)) || { \
	  echo "Backstop needs Python 3.12 or newer (Django 6.1) and found none on PATH or under pyenv." >&2; \
	  echo "Install one (for example: pyenv install 3.13) and run make again." >&2; exit 1; }; \
	if ! { [ -x $(PY) ] && $(PY) -c 'import sys; sys.exit(sys.version_info < (3, 12))'; }; then \
	  echo "creating $(VENV) with $$py"; rm -rf $(VENV); "$$py" -m venv $(VENV); fi
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $@

db: $(VENV)/.installed
	@$(PY) manage.py ensuredb
	@$(PY) manage.py migrate --noinput -v 0

# The demo's three HTTP platforms (IAM, ticketing, billing) are reference platform servers;
# these demo secrets are for them only. Set your own variables to point elsewhere.
run: export BACKSTOP_PLATFORMS_FILE ?= controlplane/demo_data/platforms.yaml
run: export BACKSTOP_WORKFLOWS_DIR ?= controlplane/demo_data/workflows
run: export IAM_TOKEN ?= demo-iam-token
run: export BILLING_SIGNING_KEY ?= demo-billing-signing-key

demo: db
	$(PY) manage.py demo

runner: db
	$(PY) manage.py runworkflows

# A Temporal dev server (in memory) with its Web UI on :8233, for BACKSTOP_ENGINE=temporal.
temporal: $(VENV)/.installed
	$(VENV)/bin/temporal server start-dev --ip 127.0.0.1 --port 7233 --ui-port 8233

run: db
	@$(PY) manage.py platformserver & platforms=$$!; \
	  trap 'kill $$runner $$platforms 2>/dev/null; wait 2>/dev/null' EXIT; \
	  $(PY) manage.py demo || exit 1; \
	  echo ""; \
	  echo "  Backstop is running at http://$(HOST):$(PORT)/ (MCP for agents at /mcp/)"; \
	  echo "  Log in as operator, approver or admin; password: $${BACKSTOP_DEMO_PASSWORD:-backstop-demo}"; \
	  echo "  A runner and the demo's HTTP platforms run alongside the web server. Ctrl-C stops all."; \
	  echo ""; \
	  $(PY) manage.py runworkflows & runner=$$!; \
	  BACKSTOP_PUBLIC_URL=$${BACKSTOP_PUBLIC_URL:-http://$(HOST):$(PORT)} \
	    $(PY) -m uvicorn controlplane.asgi:application --host $(HOST) --port $(PORT) --log-level warning

# The browser tests drive Debian's Chromium; install it when it is missing.
$(CHROMIUM):
	@echo "installing Debian's chromium for the browser tests"
	@if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null

lint: $(VENV)/.installed
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy .

test: lint $(CHROMIUM)
	@$(PY) manage.py ensuredb
	$(PY) manage.py makemigrations --check --dry-run
	$(PY) -m pytest

screenshots: $(VENV)/.installed $(CHROMIUM)
	BACKSTOP_SCREENSHOTS=1 $(PY) -m pytest tests/browser -q

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
