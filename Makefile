# Two commands on a fresh clone: `make demo` and `make test`. Each sets up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LAB ?= demo-lab

.PHONY: setup demo demo-quick test test-fast bench stress clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -e ".[dev,report]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/reuse-console --lab $(LAB) demo

demo-quick: $(STAMP)
	$(BIN)/reuse-console --lab $(LAB)-quick demo --quick

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

bench: $(STAMP)
	$(BIN)/python bench/lab_listing.py
	$(BIN)/python bench/train_throughput.py --threads 1
	$(BIN)/python bench/tui_latency.py
	$(BIN)/python bench/scan.py

stress: $(STAMP)
	$(BIN)/python bench/stress.py --kills 20

clean:
	rm -rf $(LAB) $(LAB)-quick .pytest_cache
