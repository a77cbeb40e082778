# One-command setup: every target creates .venv and installs the project if needed.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
export DO_NOT_TRACK := true
export KEDRO_DISABLE_TELEMETRY := true
export MLFLOW_DISABLE_TELEMETRY := true

.PHONY: install run test lint viz mlflow-ui clean-data

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

install: $(BIN)/.installed

run: install  ## the main job on the default real data
	$(BIN)/kedro run --pipelines=training

test: install
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

viz: install  ## interactive pipeline graph on http://127.0.0.1:4141
	$(BIN)/kedro viz run --host 127.0.0.1 --no-browser

mlflow-ui: install  ## MLflow UI on http://127.0.0.1:5000
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false $(BIN)/mlflow server \
		--backend-store-uri sqlite:///mlflow.db --host 127.0.0.1 --port 5000 --workers 1

clean-data:  ## remove every generated file under data/ (keeps .gitkeep)
	find data -type f ! -name .gitkeep -delete
	find data -mindepth 2 -type d -empty -delete
