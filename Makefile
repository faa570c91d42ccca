# Two commands matter: `make run` (the suite on this machine) and `make test` (every test).
# Both create the virtual environment they need on first use.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: run test lint gen check-gen bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

node_modules/.installed-stamp: package.json
	npm install --no-audit --no-fund --loglevel=error
	touch $@

run: $(STAMP)            ## start all four services on the embedded store (Ctrl-C stops)
	$(VENV)/bin/loyalty up

test: $(STAMP)           ## every test; starts its own PostgreSQL unless LOYALTY_TEST_DATABASE_URL is set
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP) node_modules/.installed-stamp   ## buf lint, ruff, mypy
	node_modules/.bin/buf lint
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

gen: $(STAMP)            ## regenerate Python code from proto/ (commit the result)
	$(PY) tools/gen_protos.py

bench: $(STAMP)          ## benchmark on PostgreSQL against same-run baselines (BENCH_ARGS="--duration 5")
	$(PY) -m bench.run $(BENCH_ARGS)

clean:
	rm -rf $(VENV) node_modules .loyalty-data .pytest_cache .mypy_cache .ruff_cache
