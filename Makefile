# One-command setup: every target creates .venv and installs the project if needed.
VENV ?= .venv
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PYTHON ?= python3
BIN := $(VENV)/bin
export DO_NOT_TRACK := true
export KEDRO_DISABLE_TELEMETRY := true
export MLFLOW_DISABLE_TELEMETRY := true

.PHONY: install browser slurm-packages slurm-up slurm-down run test lint viz mlflow-ui screenshots clean-data

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

install: $(BIN)/.installed browser

# the system Chromium for the browser tests and `make screenshots` (Debian's package;
# playwright drives it, nothing is downloaded); skipped when one is installed
browser:
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || { \
		echo "installing Chromium (apt-get)"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium; }

# SLURM from Debian's packages (slurmctld, slurmd, sbatch, munge) for the SLURM tests and
# `make slurm-up`; skipped when installed
slurm-packages:
	@command -v sbatch >/dev/null && test -x /usr/sbin/slurmctld && test -x /usr/sbin/munged || { \
		echo "installing SLURM (apt-get)"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq --no-install-recommends \
			slurmctld slurmd slurm-client munge; }

slurm-up: install slurm-packages  ## a one-node SLURM cluster on this machine (config in .slurm/)
	$(BIN)/python -m tests.slurm up --dir .slurm

slurm-down: install  ## stop it
	$(BIN)/python -m tests.slurm down --dir .slurm

run: install  ## the main job on the default real data
	$(BIN)/kedro run --pipelines=training

test: install
	$(BIN)/pytest

lint: install  ## ruff, and the package's layers and acyclic imports (import-linter, pyproject.toml)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/lint-imports

viz: install  ## interactive pipeline graph on http://127.0.0.1:4141
	$(BIN)/kedro viz run --host 127.0.0.1 --no-browser

mlflow-ui: install  ## MLflow UI on http://127.0.0.1:5000 (prints the runs-table link)
	@$(BIN)/brstnet mlflow-link || true
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false $(BIN)/mlflow server \
		--backend-store-uri sqlite:///mlflow.db --host 127.0.0.1 --port 5000 --workers 1

screenshots: install  ## the MLflow runs table and the kedro-viz flowchart, data/08_reporting/*.png
	$(BIN)/python -m tests.browser --out data/08_reporting

clean-data:  ## remove every generated file under data/ (keeps .gitkeep)
	find data -type f ! -name .gitkeep -delete
	find data -mindepth 2 -type d -empty -delete

.PHONY: docs docs-build
docs: install  ## the documentation (MkDocs) on http://127.0.0.1:8000
	$(BIN)/mkdocs serve -a 127.0.0.1:8000

docs-build: install  ## the documentation as a static site in site/, strictly (as the tests do)
	$(BIN)/mkdocs build --strict
