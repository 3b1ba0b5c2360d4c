# ticket_router: `make train` and `make test` do all set-up on a fresh clone.
# torch is installed first and pinned: here it resolves to a local CPU build, while an unpinned torch would pull
# several GB of CUDA packages. Override with `make TORCH_SPEC="torch==2.13.0 --index-url ..."` on GPU machines.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_SPEC ?= torch==2.13.0
RUN_DIR ?= runs/harbor
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install train route test test-slow bench bench-quick data clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q $(TORCH_SPEC)
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

install: $(VENV)/.installed

## Train the default router on the embedded Harbor tickets, then route the sample tickets.
train: install
	$(BIN)/ticket-router train --config configs/harbor.yaml --output $(RUN_DIR)
	$(MAKE) --no-print-directory route

route: install
	$(BIN)/ticket-router predict --model $(RUN_DIR) --input data/harbor/samples.txt --output -

test: install
	$(BIN)/python -m pytest -q

test-slow: install
	$(BIN)/python -m pytest -q -m slow

bench: install
	$(BIN)/python -m bench

bench-quick: install
	$(BIN)/python -m bench --quick

data:
	$(PYTHON) data/generate_harbor.py

clean:
	rm -rf runs bench/out .pytest_cache
