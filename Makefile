# Developer commands. `make install` first; then `make train`, `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Empty this (`make install CONSTRAINTS=`) to keep a torch you installed yourself (e.g. CUDA).
CONSTRAINTS ?= constraints-cpu.txt
PIP_CONSTRAINT_FLAG := $(if $(CONSTRAINTS),-c $(CONSTRAINTS),)

.PHONY: install train test test-slow bench gpu-carry lint format clean

install:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(PIP_CONSTRAINT_FLAG) -e ".[dev]"

train:
	$(BIN)/python train.py $(ARGS)

test:
	$(BIN)/python -m pytest $(ARGS)

# Ours vs transformers Trainer + PEFT (MiniLM, SST-2, CPU or GPU); see docs/performance.md.
bench:
	$(BIN)/python -m glue_lora.bench --out bench.json $(ARGS)

# .carry/ for the GPU machine and the device command for bench/gpu.sh; see docs/performance.md, "On a GPU".
gpu-carry:
	bash bench/gpu_carry.sh

test-slow:
	$(BIN)/python -m pytest -m slow $(ARGS)

lint:
	$(BIN)/python -m ruff check .
	$(BIN)/python -m ruff format --check .

format:
	$(BIN)/python -m ruff format .
	$(BIN)/python -m ruff check --fix .

clean:
	rm -rf outputs .pytest_cache .ruff_cache
