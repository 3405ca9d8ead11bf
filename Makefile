# Two commands on a fresh clone: `make demo` and `make test`. Each sets up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LAB ?= demo-lab
# Debian packages the tests use: HDF5's own tools (h5ls, h5dump, h5clear) read the lab files;
# slurm-wlm and munge run the one-node SLURM of the cluster tests (tests/cluster/slurm.sh)
APT_PACKAGES := hdf5-tools tmux slurm-wlm munge

.PHONY: setup system-deps demo demo-quick test test-fast test-cluster-chaos lint bench stress clean

setup: $(STAMP)

$(STAMP): pyproject.toml setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -e ".[dev,report,cluster]"
	touch $(STAMP)

# apt-get only when a tool is missing (and only as root: elsewhere say what to install)
system-deps:
	@missing=""; command -v h5ls >/dev/null || missing="$$missing hdf5-tools"; \
	command -v tmux >/dev/null || missing="$$missing tmux"; \
	command -v slurmctld >/dev/null || [ -x /usr/sbin/slurmctld ] || missing="$$missing slurm-wlm"; \
	command -v munged >/dev/null || [ -x /usr/sbin/munged ] || missing="$$missing munge"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else echo "tests need Debian packages:$$missing (apt-get install$$missing)"; fi; \
	fi

demo: $(STAMP)
	$(BIN)/reuse-console --lab $(LAB) demo

demo-quick: $(STAMP)
	$(BIN)/reuse-console --lab $(LAB)-quick demo --quick

# ruff (lint + format check), import-linter contracts and mypy; part of `make test`
lint: $(STAMP)
	$(BIN)/ruff check engine store tui tests bench setup.py
	$(BIN)/ruff format --check engine store tui tests bench setup.py
	$(BIN)/python tests/support/package_tree.py imports
	$(BIN)/python tests/support/package_tree.py mypy

test: $(STAMP) system-deps lint
	$(BIN)/python -m pytest -q -m "not race"

# the SLURM kill/requeue test: in 1 of ~9 runs the one-node SLURM left the killed task's processes
# stopped and alive (state T) after `scancel --signal=KILL` of the suspended task, so the resubmitted
# task found the cell claimed by a live process; kept out of `make test` until that is understood
test-cluster-chaos: $(STAMP) system-deps
	$(BIN)/python -m pytest -q -m race

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow and not cluster"

bench: $(STAMP)
	$(BIN)/python bench/lab_listing.py
	$(BIN)/python bench/train_throughput.py --threads 1
	$(BIN)/python bench/train_3d.py --threads 1
	$(BIN)/python bench/tui_latency.py
	$(BIN)/python bench/scan.py
	$(BIN)/python bench/recalibration.py
	$(BIN)/python bench/cka.py --threads 1

stress: $(STAMP)
	$(BIN)/python bench/stress.py --kills 20

clean:
	rm -rf $(LAB) $(LAB)-quick .pytest_cache .mypy_cache .ruff_cache
