# Small developer entry points. Each target works on a fresh machine with only Python 3.11 and pip:
# it creates .venv when missing and installs what it needs (re-installing only when pyproject.toml changes).
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip --disable-pip-version-check -q

.PHONY: demo test lint fmt bench clean help

help:
	@echo "make demo   - train, register and tour mlpilot on the embedded default store"
	@echo "make test   - lint (ruff, mypy, import contracts) and run the whole test suite"
	@echo "make lint   - ruff, mypy and the import contracts only"
	@echo "make bench  - run the benchmarks against the peer tools (slow; see bench/README.md)"

$(BIN)/python:
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "$(PYTHON) not found: set PYTHON=/path/to/python3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip

$(VENV)/.demo-installed: pyproject.toml | $(BIN)/python
	$(PIP) install -e '.[sklearn,serve,monitor]'
	@touch $@

$(VENV)/.test-installed: pyproject.toml | $(BIN)/python
	$(PIP) install -e '.[dev,sklearn,xgboost,lightgbm,onnx,torch,pyfunc,postgres,redis,s3,monitor,features,serve,k8s]'
	@touch $@ $(VENV)/.demo-installed

demo: $(VENV)/.demo-installed
	$(BIN)/mlpilot demo

lint: $(VENV)/.test-installed
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

fmt: $(VENV)/.test-installed
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

test: lint
	$(BIN)/pytest $(PYTEST_ARGS)

bench: $(VENV)/.test-installed
	$(BIN)/python bench/tracking_vs_mlflow.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
