# Tailor: two commands set up a fresh machine — `make demo` and `make test`.
PYTHON ?= python3.11
VENV ?= .venv
# A CPU build of torch lies on disk for this pin; install it first so nothing pulls a CUDA wheel.
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.tailor-installed

.PHONY: install demo test test-slow bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[all,dev,data]"
	touch $(STAMP)

install: $(STAMP)

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
