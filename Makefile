# fourflow — two commands matter: `make demo` and `make test`. Both set themselves up.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
NODE_STAMP := contracts/node_modules/.installed
BENCH_STAMP := bench/peers/node_modules/.installed

.PHONY: demo test lint typecheck contracts contracts-deps gas-table clean browser bench bench-deps

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

$(NODE_STAMP): contracts/package.json contracts/package-lock.json
	cd contracts && npm ci --no-audit --no-fund --loglevel=error
	touch $@

contracts-deps: $(NODE_STAMP)

demo: $(STAMP)
	$(VENV)/bin/fourflow demo

lint: $(STAMP)
	$(VENV)/bin/ruff check ledger api oracles tests bench
	$(VENV)/bin/mypy ledger oracles

# one worker per core; a module's tests stay together (they share module-scoped scenes)
test: $(STAMP) $(NODE_STAMP) $(BENCH_STAMP) browser lint
	$(VENV)/bin/pytest -q -n auto --dist loadfile

# Debian's chromium for the real-browser tests (Playwright drives it; no browser download)
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" -eq 0 ]; then sudo=; \
	  elif command -v sudo >/dev/null 2>&1; then sudo=sudo; \
	  else echo "chromium is missing: install it as root (apt-get install chromium)" >&2; exit 1; fi; \
	  echo "installing chromium (apt)"; \
	  $$sudo apt-get update -qq && $$sudo apt-get install -y -qq chromium; \
	}

# the peers the benchmarks measure against, from the registries (pip, npm), pinned
$(BENCH_STAMP): bench/peers/package.json bench/peers/package-lock.json bench/requirements.txt $(STAMP)
	$(PY) -m pip install --quiet -r bench/requirements.txt
	cd bench/peers && npm ci --no-audit --no-fund --loglevel=error
	touch $@

bench-deps: $(BENCH_STAMP)

# quick sizes by default (a few minutes); `make bench ARGS=--full` for the large ones
bench: $(STAMP) $(NODE_STAMP) $(BENCH_STAMP)
	$(PY) -m bench $(ARGS)

contracts: $(STAMP) $(NODE_STAMP)
	$(VENV)/bin/fourflow contracts compile

# after a contract change: re-measure and rewrite the gas table in docs/contracts.md
gas-table: $(STAMP) $(NODE_STAMP)
	FOURFLOW_UPDATE_GAS_TABLE=1 $(VENV)/bin/pytest -q tests/test_contract_gas.py

clean:
	rm -rf $(VENV) contracts/node_modules bench/peers/node_modules .pytest_cache .mypy_cache .ruff_cache
