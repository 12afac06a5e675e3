# StockPulse: `make demo` runs the workbench, `make test` runs the whole suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt pyproject.toml | sha1sum | cut -c1-12)
# torch's CPU-only wheels (PyPI's Linux x86_64 wheel is a CUDA build with GBs of GPU libraries)
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
export PYTHONUNBUFFERED := 1

.PHONY: install demo test test-fast test-plain test-dates lint format bench browser faketime \
	timescaledb db-start db-stop db-status clean

# torch first, from its CPU wheel index as the Dockerfile does, at the version requirements.txt
# pins (2.x.y+cpu satisfies ==2.x.y in the next step); where that index cannot be used (no
# network to it: fails within seconds), the pinned requirement comes from the configured index.
$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	@echo "==> installing dependencies into $(VENV) (first run takes a few minutes)"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	@torch_pin="$$(grep -E '^torch==' requirements.txt)"; \
		$(PY) -m pip install --quiet --disable-pip-version-check --timeout 10 --retries 0 \
			--index-url $(TORCH_INDEX) "$$torch_pin" >/dev/null 2>&1 \
		|| echo "==> $(TORCH_INDEX) could not be used: $$torch_pin comes from the configured index"
	@$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

install: $(STAMP)

db-start: install
	@$(PY) -m db.embedded start

db-stop: install
	@$(PY) -m db.embedded stop

db-status: install
	@$(PY) -m db.embedded status
	@$(PY) -m db.migrate status

demo: install
	@$(PY) scripts/demo.py

lint: install
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/ruff format --check .
	@$(VENV)/bin/mypy

format: install
	@$(VENV)/bin/ruff format .
	@$(VENV)/bin/ruff check --fix .

# Debian's chromium for the browser tests (Playwright's own browser download is not used).
browser:
	@command -v chromium >/dev/null || { SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$SUDO apt-get update && $$SUDO apt-get install -y chromium; }

# Debian's libfaketime for the tests that depend on the date (make test-dates).
faketime:
	@command -v faketime >/dev/null || { SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$SUDO apt-get update && $$SUDO apt-get install -y faketime; }

# Two pytest workers (pytest-xdist): model training mostly keeps one core busy, so two halves of
# the suite share the machine's two cores; tests sharing an expensive fixture stay on one worker.
PYTEST_PARALLEL := -n 2 --dist loadgroup

test: lint browser
	@$(PY) scripts/run_suite.py test $(PYTEST_PARALLEL) --durations=25

# The database tests again on plain PostgreSQL (its own embedded server in var/plain,
# TimescaleDB off): the fallback stays a first-class path. The tests marked slow (model
# training, browser, supervisord) run once, under `make test`: the queries they reach are the
# db/ functions the other tests cover on both flavours.
test-plain: install browser
	@TIMESCALEDB=off DATA_DIR=$(CURDIR)/var/plain \
		$(PY) scripts/run_suite.py test-plain $(PYTEST_PARALLEL) -m "not no_db and not slow"

# TimescaleDB built from source into the embedded PostgreSQL (scripts/build_timescaledb.sh),
# from a tarball that must match the SHA-256 pinned in scripts/timescaledb.sha256; the embedded
# server restarts with it preloaded the next time a command needs the database.
timescaledb: install
	@PY=$(PY) bash scripts/build_timescaledb.sh

# Every test marked `dates` at fixed instants under libfaketime (holidays, early closes, DST,
# weekends, 03:00 UTC); see scripts/test_dates.py.
test-dates: install faketime
	@$(PY) scripts/test_dates.py

test-fast: install
	@$(PY) -m pytest -m "not slow"

bench: install
	@$(PY) -m benchmarks.run

clean:
	@$(PY) -m db.embedded stop || true
	rm -rf var test-artifacts .pytest_cache .mypy_cache .ruff_cache
