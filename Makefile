# Two commands a newcomer needs: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip

.PHONY: demo test lint pytest jstest browser bench clean

$(VENV)/.demo: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -e '.[demo]'
	touch $@

$(VENV)/.dev: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -e '.[dev]'
	touch $(VENV)/.demo $@

# --allow-root only where we are root (containers); a normal user never needs it.
demo: $(VENV)/.demo
	$(VENV)/bin/jupyter lab $$([ "$$(id -u)" = 0 ] && echo --allow-root) notebooks/01_quickstart.ipynb

test: $(VENV)/.dev lint jstest browser pytest

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check nbexplain tests benchmarks

pytest: $(VENV)/.dev
	$(PY) -m pytest

jstest:
	cd js && npm ci --no-audit --no-fund --silent && npm test

# Real-browser tests need Debian's Chromium; install it when we can (root), else the tests say why.
browser:
	@test -x /usr/bin/chromium || { [ "$$(id -u)" = 0 ] && (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) ; } || true

bench: $(VENV)/.dev
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) js/node_modules .pytest_cache .ruff_cache
