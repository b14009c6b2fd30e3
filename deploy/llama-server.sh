#!/usr/bin/env bash
# Solace's CPU model server: llama.cpp's native `llama-server` (parallel slots, continuous
# batching, one model copy), for the bot's `openai` backend — the compose `cpu` profile and a
# systemd model-server unit. It runs the binary `make llama-server` builds (the image has it on
# PATH) with exactly the flags `solace serve` gives its own child
# (bot/backends/llama_server_command.py): the model is served under the name "solace", with
# --parallel slots of LLAMA_N_CTX tokens each.
#
# Environment (all optional; empty = the SOLACE_* setting, then its default):
#   LLAMA_MODEL      GGUF file (SOLACE_MODEL__PATH; default: the embedded SmolLM2-135M-Instruct)
#   LLAMA_LORA       LoRA adapter GGUF to apply (SOLACE_MODEL__LORA_PATH)
#   LLAMA_HOST       listen address (default: 127.0.0.1; 0.0.0.0 inside a container)
#   LLAMA_PORT       listen port (default: 8080)
#   LLAMA_PARALLEL   slots = conversations generated at once (SOLACE_LLAMA_SERVER__PARALLEL)
#   LLAMA_N_CTX      context per slot in tokens (SOLACE_MODEL__N_CTX; the whole KV cache is
#                    LLAMA_PARALLEL x LLAMA_N_CTX; set the bot's SOLACE_OPENAI__CONTEXT_TOKENS to it)
#   LLAMA_THREADS    CPU threads (SOLACE_MODEL__N_THREADS; default: llama.cpp's, the cores)
#   LLAMA_API_KEY    if set, clients must send it as a Bearer token (SOLACE_OPENAI_API_KEY)
#   PYTHON           the Python that has Solace installed (default: python3)
set -euo pipefail
exec "${PYTHON:-python3}" -m bot.backends.llama_server_command \
  --host "${LLAMA_HOST:-127.0.0.1}" --port "${LLAMA_PORT:-8080}"
