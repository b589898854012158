# Two commands on a fresh machine: `make run` and `make test`.
# Each creates (or refreshes) the local virtualenv in .venv first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
DURATION ?= 30

.PHONY: setup run run-local test bench soak clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

## Market-make on the embedded default (three simulated venues) for $(DURATION) s.
run: setup
	$(VENV)/bin/hft run --duration $(DURATION)

## Market-make through ccxt on three local exchange servers for $(DURATION) s.
run-local: setup
	$(PY) scripts/local_exchanges.py --duration $(DURATION)

## Unit, integration and short soak tests.
test: setup
	$(VENV)/bin/pytest -q

## Long fault soak: 50 kill -9 restarts of ~10 s on three local exchanges with faults on (~11 min).
soak: setup
	HFT_SOAK_LONG=1 $(VENV)/bin/pytest -q -s -m soak tests/soak

## Benchmarks: printed tables, ratios to baselines measured in the same run.
bench: setup
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache
