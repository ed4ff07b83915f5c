# Two commands for users: `make demo` and `make test`. Everything else is for developers.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
OUT    ?= out/demo

.PHONY: demo demo-aws test lint bench clean venv install install-dev

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# A stamp per extra so that repeated runs do not reinstall.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

## demo: create .venv, install, process the sample files and print both KPI tables.
demo: install
	rm -rf $(OUT)
	$(BIN)/order-kpis process fixtures/valid_order.csv fixtures/orders_2025-07-07.csv --out $(OUT)
	@echo
	@echo "--- the invalid sample is rejected with its reasons (exit 1 is expected) ---"
	$(BIN)/order-kpis process fixtures/invalid_order.csv --out $(OUT) -q || test $$? -eq 1

## demo-aws: the same samples through the real AWS stack on an embedded moto (no Docker, no account).
demo-aws: install-dev
	$(BIN)/order-kpis local-aws demo

## test: install the dev extras and run the whole default suite.
test: install-dev
	tests/aws/install_dynamodb_local.sh
	PYTHON=$(PYTHON) tests/aws/install_awscli.sh
	$(BIN)/python -m pytest

lint: install-dev
	$(BIN)/ruff check engine containers tests benchmarks orchestration
	$(BIN)/mypy

bench: install-dev
	$(BIN)/order-kpis bench

clean:
	rm -rf $(VENV) out build dist *.egg-info .pytest_cache .hypothesis
