# The two commands a fresh clone needs: `make train` (the main job) and `make test`.
# Each builds .venv from requirements.lock (exact versions and hashes) when the lock changed;
# nothing else is set up by hand. `make lock` refreshes the lock and keeps it only if the suite passes.
PYTHON ?= python3
VENV ?= .venv
LOCK ?= requirements.lock
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Compiled for every platform and Python >= 3.11 (markers select per machine), with hashes.
UV_COMPILE := pip compile pyproject.toml --extra dev --extra lm --universal --generate-hashes --python-version 3.11 --quiet

.PHONY: train test test-slow lint bench venv lock clean

# A changed lock rebuilds the venv from scratch: pip only adds packages, so an upgrade in place would
# keep whatever the old lock had and the new one dropped.
$(STAMP): $(LOCK)
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --require-hashes -r $(LOCK)
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

venv: $(STAMP)

train: $(STAMP)
	$(PY) train.py $(ARGS)

test: $(STAMP)
	$(PY) -m pytest -q $(ARGS)

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: $(STAMP)
	$(PY) experiments/throughput/run.py

# Today's newest versions that satisfy pyproject.toml, installed into a throwaway venv and tested
# there; requirements.lock is replaced only when that suite passes.
lock: $(STAMP)
	$(VENV)/bin/uv $(UV_COMPILE) --upgrade -o $(LOCK).new
	$(MAKE) test VENV=.venv-lock LOCK=$(LOCK).new
	mv $(LOCK).new $(LOCK)
	rm -rf .venv-lock

clean:
	rm -rf outputs multirun .cache
