# Outside-In: `make run` starts the app on this machine, `make test` runs the suite.
# Everything lives in .venv/; dependencies are pinned in pyproject.toml and installed again only
# when pyproject.toml changes.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
.DELETE_ON_ERROR:

VENV := .venv
PY := $(VENV)/bin/python
# Stamps: the time pyproject.toml was last installed, with and without the dev extras.
STAMP := $(VENV)/.installed
STAMP_DEV := $(VENV)/.installed-dev

# `make PYTHON=/path/to/python3.12 …` picks the interpreter; otherwise the first one found that
# really runs and is ≥ 3.12 (pyenv shims for versions that are not active fail, and are skipped).
PYTHON ?=
PYTHON_CANDIDATES := $(PYTHON) python3.13 python3.12 python3 \
	$(sort $(wildcard $(HOME)/.pyenv/versions/3.1[2-9]*/bin/python3)) \
	$(wildcard /usr/local/bin/python3.1[2-9] /usr/bin/python3.1[2-9]) \
	$(wildcard /opt/python/3.1[2-9]*/bin/python3)

# Prints the pinned requirements from pyproject.toml; `dev` adds the dev extras and the optional
# `spark` extra (its tests run a Spark Connect server; `make run` does not need it).
define REQUIREMENTS_PY
import sys, tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
requirements = list(project["dependencies"])
if sys.argv[1:] == ["dev"]:
    requirements += project["optional-dependencies"]["dev"]
    requirements += project["optional-dependencies"]["spark"]
print("\n".join(requirements))
endef
export REQUIREMENTS_PY

PYTEST_ARGS ?=
BENCH_ARGS ?=
# `make bench drift`: the words after `bench` name benchmarks (BENCH_ARGS), not targets.
ifeq (bench,$(firstword $(MAKECMDGOALS)))
  BENCH_NAMES := $(wordlist 2,$(words $(MAKECMDGOALS)),$(MAKECMDGOALS))
  ifneq ($(BENCH_NAMES),)
    BENCH_ARGS := $(BENCH_NAMES)
    $(eval $(BENCH_NAMES):;@:)
  endif
endif

.PHONY: help install install-dev run test lint typecheck check-deploy bench clean

help:
	@echo "make run           install, migrate, load the demo plan once, start web + worker on http://127.0.0.1:8000"
	@echo "make test          run the test suite (DATABASE_URL, REDIS_URL, REQUIRE_SERVICES from the environment;"
	@echo "                   PYTEST_ARGS='-k board -x' passes options on)"
	@echo "make lint          ruff check and ruff format --check"
	@echo "make typecheck     mypy with django-stubs"
	@echo "make check-deploy  Django's deployment checks with production settings"
	@echo "make bench         run the benchmarks in bench/ (BENCH_ARGS=imports picks some)"
	@echo "make clean         remove .venv and caches (var/, the embedded data, is kept)"

$(PY):
	@found=""; \
	for candidate in $(PYTHON_CANDIDATES); do \
	  if "$$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1; then \
	    found="$$candidate"; break; \
	  fi; \
	done; \
	if [ -z "$$found" ]; then \
	  echo "error: Outside-In needs Python 3.12 or newer (Django 6.1 does not run on older ones)." >&2; \
	  echo "       Tried: $(strip $(PYTHON_CANDIDATES))" >&2; \
	  echo "       Install Python 3.12+, or name one: make PYTHON=/path/to/python3.12 $(MAKECMDGOALS)" >&2; \
	  exit 1; \
	fi; \
	echo "Creating $(VENV) with $$found ($$("$$found" --version 2>&1))"; \
	"$$found" -m venv --clear $(VENV) || { rm -rf $(VENV); exit 1; }

# Refuses a .venv made by an older Python (e.g. one created by hand with python3 = 3.11).
define CHECK_VENV
	@$(PY) -c 'import sys; sys.exit(sys.version_info < (3, 12))' || { \
	  echo "error: $(VENV) uses $$($(PY) --version 2>&1); Outside-In needs 3.12+. Run 'make clean' and try again." >&2; \
	  exit 1; }
endef

$(STAMP): pyproject.toml | $(PY)
	$(CHECK_VENV)
	@echo "Installing the dependencies pinned in pyproject.toml"
	@$(PY) -c "$$REQUIREMENTS_PY" > $(VENV)/requirements.txt
	$(PY) -m pip install --quiet -r $(VENV)/requirements.txt
	@touch $@

$(STAMP_DEV): pyproject.toml | $(PY)
	$(CHECK_VENV)
	@echo "Installing the dependencies pinned in pyproject.toml, with the dev and spark extras"
	@$(PY) -c "$$REQUIREMENTS_PY" dev > $(VENV)/requirements-dev.txt
	$(PY) -m pip install --quiet -r $(VENV)/requirements-dev.txt
	@touch $(STAMP) $@

install: $(STAMP)
install-dev: $(STAMP_DEV)

run: $(STAMP)
	bin/dev

# pytest exits 5 when it collected no test: that fails here, on purpose, and says why.
test: $(STAMP_DEV)
	@echo "Database: $${DATABASE_URL:-SQLite under $${OUTSIDE_IN_VAR_DIR:-var/}}; broker: $${REDIS_URL:-Kombu filesystem transport}; REQUIRE_SERVICES=$${REQUIRE_SERVICES:-0}"
	@status=0; $(VENV)/bin/pytest $(PYTEST_ARGS) || status=$$?; \
	if [ $$status -eq 5 ]; then echo "make test: pytest collected no tests (exit 5); that is a failure." >&2; fi; \
	exit $$status

lint: $(STAMP_DEV)
	@status=0; \
	$(VENV)/bin/ruff check . || status=1; \
	$(VENV)/bin/ruff format --check . || status=1; \
	exit $$status

typecheck: $(STAMP_DEV)
	$(VENV)/bin/mypy .

# Production settings as a deployment sets them (a real mail server, not the console), with a
# throw-away key; the embedded database goes to a temporary directory.
check-deploy: $(STAMP)
	@var_dir=$$(mktemp -d); trap 'rm -rf "$$var_dir"' EXIT; \
	DEBUG=0 ALLOWED_HOSTS=example.com OUTSIDE_IN_VAR_DIR="$$var_dir" \
	EMAIL_URL="smtp://mail.example.com:587?tls=1" \
	SECRET_KEY="$$($(PY) -c 'import secrets; print(secrets.token_urlsafe(64))')" \
	$(PY) manage.py check --deploy --fail-level WARNING

bench: $(STAMP_DEV)
	@if [ -f bench/__main__.py ] || [ -f bench/__init__.py ]; then \
	  $(PY) -m bench $(BENCH_ARGS); \
	else \
	  echo "No benchmarks exist yet (no bench/ package)."; \
	fi

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache test-results bench-results
	find . -name __pycache__ -type d -not -path './.git/*' -prune -exec rm -rf {} +
