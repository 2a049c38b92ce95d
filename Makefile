# marketapp: two commands. `make run` serves the embedded default; `make test` runs the suite.
PY ?= $(shell command -v pyenv >/dev/null 2>&1 && echo $$(pyenv root)/versions/3.13.0/bin/python3 || echo python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Tests run in the stack mode against the local PostgreSQL and Redis unless told otherwise.
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/marketapp
TEST_REDIS_URL ?= redis://127.0.0.1:6379/15
# Benchmarks use their own database and Redis db (created, migrated and flushed by bench/).
BENCH_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/marketapp_bench
BENCH_REDIS_URL ?= redis://127.0.0.1:6379/7
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: setup run test lint migrate seed clean bench bench-quick

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): $(BIN)/python requirements.txt requirements-dev.txt
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $(STAMP)

# Front-end packages (exact versions in package-lock.json), served as static files.
node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch node_modules/.installed

setup: $(STAMP) node_modules/.installed

migrate: setup
	$(BIN)/python manage.py migrate --noinput

seed: migrate
	$(BIN)/python manage.py seed_demo

run: seed
	$(BIN)/python manage.py collectstatic --noinput -v 0
	$(BIN)/python manage.py runmarket --host $(HOST) --port $(PORT)

test: setup
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) $(BIN)/pytest $(PYTEST_ARGS)

# ruff, then the import contract in pyproject.toml (the layers in docs/ARCHITECTURE.md).
lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache

# Every benchmark in bench/run.py ORDER (bench/results/<name>.json); bench-quick: the same, small and short.
bench: setup
	BENCH_DATABASE_URL=$(BENCH_DATABASE_URL) BENCH_REDIS_URL=$(BENCH_REDIS_URL) $(BIN)/python -m bench.run

bench-quick: setup
	BENCH_DATABASE_URL=$(BENCH_DATABASE_URL) BENCH_REDIS_URL=$(BENCH_REDIS_URL) $(BIN)/python -m bench.run --quick

clean:
	rm -rf var/*.sqlite3* var/static
