# healer: `make demo` and `make test` are the whole set-up on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: demo test lint bench clean prometheus prometheus-alertmanager kubectl chromium postgresql

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# The demo and the tests run the simulated cluster: the `sim` extra (not in the image).
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[sim]'
	touch $@

$(DEV_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev,sim]'
	touch $(STAMP) $@

demo: $(STAMP)
	$(BIN)/healer demo $(ARGS)

# The integration tests run a real Prometheus (Debian package `prometheus`) and a real
# Alertmanager (`prometheus-alertmanager`) delivering to the API. Installed here when
# missing: as root directly, otherwise through sudo. When that is not possible their
# tests skip, or fail when HEALER_REQUIRE_PROMETHEUS=1 (CI).
# The kubectl tests need a kubectl: Debian's kubernetes-client when none is installed
# (it conflicts with the `kubectl` package, so only then). The review page's browser
# test drives Debian's chromium through Playwright (its own browser download is not used).
# The store's PostgreSQL tests start a throwaway server of Debian's postgresql
# (tests/integration/local_postgres.py) unless HEALER_TEST_POSTGRES_URL names one.
# The tests run in parallel, one worker per core and one more, since many of them wait
# on daemons and servers in real time (WORKERS=0: in one process); see "Tests" in
# tests/conftest.py for what keeps them apart.
WORKERS ?= $(shell echo $$(( $$(nproc) + 1 )))
# Bytecode is written even where the environment says not to (PYTHONDONTWRITEBYTECODE,
# common in CI images): otherwise each worker rewrites every test module's asserts
# again (8 of its 17 s of CPU collecting), and each `healer` process the tests start
# compiles the package again.
test: $(DEV_STAMP)
	@command -v prometheus >/dev/null 2>&1 || $(MAKE) --no-print-directory prometheus || \
		echo "make: prometheus not installed; its integration tests will skip" >&2
	@command -v prometheus-alertmanager >/dev/null 2>&1 || \
		$(MAKE) --no-print-directory prometheus-alertmanager || \
		echo "make: prometheus-alertmanager not installed; its integration test will skip" >&2
	@command -v kubectl >/dev/null 2>&1 || $(MAKE) --no-print-directory kubectl || \
		echo "make: kubectl not installed; its integration tests will skip" >&2
	@test -x /usr/bin/chromium || $(MAKE) --no-print-directory chromium || \
		echo "make: chromium not installed; the browser test will skip (fail under CI)" >&2
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || \
		$(MAKE) --no-print-directory postgresql || \
		echo "make: postgresql not installed; its store tests will skip (fail under CI)" >&2
	env -u PYTHONDONTWRITEBYTECODE $(BIN)/python -m pytest -n $(WORKERS) --durations=20 --cov=healer --cov-report=term:skip-covered $(ARGS)

prometheus prometheus-alertmanager kubectl chromium postgresql:
	@if [ "$$(id -u)" = 0 ]; then sudo=; else sudo="sudo -n"; fi; \
	package=$$([ "$@" = kubectl ] && echo kubernetes-client || echo "$@"); \
	$$sudo apt-get update -qq && \
	DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends $$package

lint: $(DEV_STAMP)
	$(BIN)/ruff format --check healer tests bench
	$(BIN)/ruff check healer tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

# Detection quality, the joint model's cost, the closed-loop chaos benchmark (tables on
# stdout; JSON and charts in bench/out/) and the simulator's day at scale (about 30 s);
# bench/prometheus_fetch.py, bench/api_incidents.py and bench/takeover.py (a leader
# SIGKILLed, seconds until another leads) take longer: run them by hand.
bench: $(STAMP)
	$(BIN)/python bench/detection.py
	$(BIN)/python bench/joint.py
	@mkdir -p bench/out
	$(BIN)/healer bench chaos --json bench/out/chaos.json --plots bench/out/chaos $(ARGS)
	$(BIN)/python bench/sim_scale.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage
