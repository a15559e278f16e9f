# Two commands do all the set-up on a fresh machine:
#   make demo   - create .venv, install promptc with its model extras, run the demo
#   make test   - create .venv, install promptc with dev + model extras, run the test suite
PY ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)

.PHONY: demo test test-slow test-nightly lint wheel-smoke bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch first and pinned: pip takes the CPU build from this machine's disk.
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[tune,dev]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m promptc.demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

# the longest runs, too long for CI's slow step (the 50,000-mutant fuzz)
test-nightly: $(STAMP)
	$(BIN)/python -m pytest -q -m nightly

lint: $(STAMP)
	$(BIN)/ruff check promptc tests bench
	$(BIN)/lint-imports
	$(BIN)/mypy

# a new user's install: the built wheel, non-editable, in a fresh venv, used from another folder
wheel-smoke:
	bash scripts/wheel_smoke.sh

bench: $(STAMP)
	$(BIN)/python bench/frontend.py
	$(BIN)/python bench/render.py
	$(BIN)/python bench/testing.py
	$(BIN)/python bench/decode.py
	$(BIN)/python bench/tune.py
	$(BIN)/python bench/http_client.py
	$(BIN)/python bench/repair.py
	$(BIN)/python bench/serve.py

clean:
	rm -rf $(VENV) .promptc build *.egg-info
