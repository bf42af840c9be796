# Two commands: `make demo` (set up, backfill a year of demo history, open the Dagster UI via
# `dg dev`) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test install system-deps clean

demo: $(VENV)/.installed
	scripts/install-system-deps --runtime-only
	$(BIN)/metrics-platform demo

# Two workers: the daemon's tests mostly wait for ticks, so the other worker runs meanwhile.
# Each module stays in one worker (its fixtures are set up once); see conftest.py.
test: $(VENV)/.installed system-deps
	$(BIN)/python -m pytest -n 2

system-deps:
	scripts/install-system-deps

install: $(VENV)/.installed

$(VENV)/.installed: setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	$(BIN)/pip check
	touch $@

clean:
	-$(BIN)/metrics-platform db stop
	rm -rf $(VENV) .metrics_platform
	# Dagster's local files (compute logs...): DAGSTER_HOME is this folder.
	rm -rf storage history logs schedules .logs_queue .nux .telemetry
