# The two commands a fresh clone needs: `make train` (the main job) and `make test`.
# Each builds .venv from requirements.lock (exact versions and hashes) when the lock changed;
# nothing else is set up by hand. `make lock` refreshes the lock and keeps it only if the suite passes.
PYTHON ?= python3
VENV ?= .venv
LOCK ?= requirements.lock
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Compiled for every platform and Python >= 3.11 (markers select per machine), with hashes.
UV_COMPILE := pip compile pyproject.toml --extra dev --extra lm --extra postgres --extra docs --universal --generate-hashes --python-version 3.11 --quiet

.PHONY: train test test-fast test-slow lint docs bench venv lock clean

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

# Test tiers (README "Tests"). `make test` is the CI tier: every test but the download ones (fast,
# slow, end-to-end on ../shared, which skip when it is absent; GPU tests run where CUDA is, skip otherwise).
# Plain `pytest` and `make test-fast` are the edit loop (pyproject addopts deselect slow, gpu, download).
TIMEOUT ?= 900
test: $(STAMP)
	$(PY) -m pytest -q -m "not download" --timeout=$(TIMEOUT) --durations=20 $(ARGS)

test-fast: $(STAMP)
	$(PY) -m pytest -q --timeout=$(TIMEOUT) $(ARGS)

test-slow: $(STAMP)
	$(PY) -m pytest -q -m "slow and not download" --timeout=$(TIMEOUT) --durations=20 $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports  # the import layers of pyproject.toml [tool.importlinter]

# The documentation site (docs/, mkdocs.yml) into site/; --strict: a broken link or missing page fails.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

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
	rm -rf outputs multirun .cache site
