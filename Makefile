# Tailor: two commands set up a fresh machine — `make demo` and `make test`.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.tailor-installed
# Every transitive version the suite runs with, with hashes (`make lock` refreshes it).
LOCK := requirements.lock
PIP_SPEC ?= pip==26.3
# torch goes in first, as the lock pins it (a CPU build), so nothing pulls a CUDA wheel. It
# lies on this machine's disk; elsewhere: make install TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH_SPEC ?= $(shell sed -n 's/^\(torch==[^ ]*\).*/\1/p' $(LOCK))
TORCH_INDEX ?=
# Where `make lock` finds that CPU build of torch (a folder of wheels or an index page).
TORCH_FIND_LINKS ?= /opt/wheels
LOCK_EXTRAS := --extra all --extra dev --extra data --extra usb

.PHONY: install lock lint demo test test-slow bench clean

$(STAMP): pyproject.toml $(LOCK)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "$(PIP_SPEC)"
	$(BIN)/python -m pip install --quiet $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX)) "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/python -m pip check
	touch $(STAMP)

install: $(STAMP)

# Resolve the newest versions pyproject.toml admits for Linux x86-64 and CPython 3.11, torch
# held at TORCH_SPEC (make lock TORCH_SPEC=torch==X+cpu to move it); then reinstall and test.
lock: install
	echo "$(TORCH_SPEC)" > $(VENV)/torch-pin.txt
	$(BIN)/uv pip compile pyproject.toml $(LOCK_EXTRAS) --upgrade --generate-hashes \
	  --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
	  --find-links $(TORCH_FIND_LINKS) --constraint $(VENV)/torch-pin.txt \
	  --no-emit-package tailor --quiet -o $(LOCK)

# ruff: lint, import order and format, as configured in pyproject.toml (`ruff format .` fixes
# the format, `ruff check --fix .` the import order).
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

demo: install
	$(BIN)/tailor demo

# CI has 2 cores and most tests wait on servers, subprocesses and Ray: two pytest workers.
TEST_WORKERS ?= 2

test: install
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS)

test-slow: install
	$(BIN)/python -m pytest -q -m slow

bench: install
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache
