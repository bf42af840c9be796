# Two commands: `make demo` (set up, load the demo, open the Dagster UI) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test install clean

demo: $(VENV)/.installed
	$(BIN)/metrics-platform demo

test: $(VENV)/.installed
	$(BIN)/python -m pytest

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
