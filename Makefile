# Two commands on a fresh machine (Python 3.11 + pip): `make demo` and `make test`.
# Both bootstrap themselves: uv is installed into .uv/ if it is not on PATH, then `uv sync --frozen`
# installs exactly what uv.lock pins into .venv/, with bytecode compiled once (imports then never compile
# from source, even where PYTHONDONTWRITEBYTECODE is set: dbt, Airflow, GX and MLflow start seconds faster).
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
UV_VERSION ?= 0.13.9
UV := $(shell command -v uv 2>/dev/null || echo .uv/bin/uv)
VENV := .venv
export UV_PYTHON := $(PYTHON)
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)
export PYTHONUNBUFFERED := 1
# two workers (2 cores): the slow end-to-end modules run side by side; PYTEST_WORKERS=0 runs in one process
PYTEST_WORKERS ?= 2

.PHONY: help install demo dashboard test test-fast lint bench clean distclean

help: ## Show the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

.uv/bin/uv:
	@echo ">> bootstrapping uv $(UV_VERSION) into .uv/"
	$(PYTHON) -m venv .uv
	.uv/bin/pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"

$(VENV)/.synced: uv.lock pyproject.toml | $(UV)
	@echo ">> installing the locked environment into $(VENV)/ (first run takes a few minutes)"
	$(UV) sync --frozen --compile-bytecode
	@touch $@

install: $(VENV)/.synced ## Create .venv from uv.lock

demo: $(VENV)/.synced ## The main job: generate, ingest, build, gate, publish, train, score (embedded default)
	$(VENV)/bin/ulm demo

dashboard: $(VENV)/.synced ## The analysts' dashboard on the serving snapshot (http://127.0.0.1:8501)
	$(VENV)/bin/ulm dashboard

test: $(VENV)/.synced ## Lint, then the whole test suite (what CI runs)
	$(VENV)/bin/ruff check ulm dags tests
	@set +e; $(VENV)/bin/pytest -p no:cacheprovider -n $(PYTEST_WORKERS) --dist loadfile --durations=25 $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest: no tests collected"; exit 1; fi; exit $$rc

test-fast: $(VENV)/.synced ## Every test but the slow end-to-end ones (real Airflow runs, model training)
	@$(MAKE) --no-print-directory test PYTEST_ARGS='-m "not slow" $(PYTEST_ARGS)'

lint: $(VENV)/.synced ## ruff (pyflakes, pycodestyle, import order) on the package, DAGs and tests
	$(VENV)/bin/ruff check ulm dags tests

bench: $(VENV)/.synced ## Benchmarks -> docs/BENCHMARKS.md
	$(VENV)/bin/ulm bench

clean: ## Remove generated data and build output (keeps .venv)
	rm -rf data dbt_project/target dbt_project/logs .pytest_cache .ruff_cache mlruns

distclean: clean ## Also remove .venv and .uv
	rm -rf $(VENV) .uv
