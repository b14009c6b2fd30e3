#!/usr/bin/env bash
# Solace's method comparison (results/compare/): SmolLM2-135M-Instruct fine-tuned on ESConv train
# by LoRA (today's and a stronger one), adaption prompt (LLaMA-Adapter) and full fine-tuning,
# each without/with strategy prefixes and with hybrid/raw history, every row at the same budget
# of 36k supervised tokens (configs/train/compare/*.toml); all scored through the same
# `solace eval generate` on a fixed ESConv *valid* subset, then the base and the chosen model on
# the ESConv test subset of results/esconv50.
#
# Every step is resumable: rerun the same command after a stop.
# Usage: SOLACE_DATA_DIR=../shared/data [JOBS=2] bash results/compare.sh train|export|generate|score|all
set -euo pipefail
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
cd "$(dirname "$0")/.."
SOLACE=${SOLACE:-.venv/bin/solace}
JOBS=${JOBS:-2}
CONFIGS=configs/train/compare
RUNS=${RUNS:-runs/compare}
# Slow rows first, interleaved with fast ones, so two lanes finish together.
ROWS=(lora-r32-all-hybrid lora-r16-top12-hybrid full-hybrid adapter-hybrid
      lora-r32-all-hybrid-strategies lora-r16-top12-hybrid-strategies full-hybrid-strategies
      adapter-hybrid-strategies lora-r32-all-raw lora-r16-top12-raw full-raw adapter-raw)
export SOLACE RUNS CONFIGS

train_one() {  # ROW
  nice -n 19 "$SOLACE" train "$CONFIGS/$1.toml" --resume > "$RUNS/$1.log" 2>&1
}
export -f train_one

train() {
  mkdir -p "$RUNS"
  printf '%s\n' "${ROWS[@]}" | xargs -P "$JOBS" -L 1 bash -c 'train_one "$1" || echo "FAILED: $1 (see $RUNS/$1.log)"' _
}

case "${1:-all}" in
  train) train ;;
  *) echo "usage: $0 train" >&2; exit 2 ;;
esac
