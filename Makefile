# Fresh machine: `make demo` and `make test` each set up .venv first.
VENV := .venv
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
export ROS_AUTOMATIC_DISCOVERY_RANGE ?= LOCALHOST

.PHONY: setup demo test lint bench clean

setup: $(STAMP)

$(STAMP): requirements.txt setup.py
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(PYTHON) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

demo: setup
	$(VENV)/bin/seg_tool demo

test: setup
	$(PYTHON) -m pytest test -q -ra

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/flake8 seg_node test launch scripts setup.py

bench: setup
	$(VENV)/bin/seg_tool bench

clean:
	rm -rf $(VENV) build install log demo_output
