#!/usr/bin/env bash
# Solace's method comparison (results/compare/): SmolLM2-135M-Instruct fine-tuned on ESConv train
# by LoRA (today's and a stronger one), adaption prompt (LLaMA-Adapter) and full fine-tuning,
# each without/with strategy prefixes and with hybrid/raw history, every row at the same budget
# of 36k supervised tokens (configs/train/compare/*.toml); all scored through the same
# `solace eval generate` on a fixed ESConv *valid* subset (configs/eval/compare-valid.toml);
# then the base and the chosen model on the ESConv test subset (configs/eval/compare-test.toml).
#
# Every step is resumable: rerun the same command after a stop.
# Usage: SOLACE_DATA_DIR=../shared/data [JOBS=2] bash results/compare.sh STEP
#   train      train the 12 rows, JOBS at a time (nice 19; each resumes from its checkpoint)
#   evaluate   export + generate + score every trained row (and the base) on valid; rerun or use
#   watch      to repeat `evaluate` every 5 minutes until every row is scored
#   long       train the winner longer (configs/train/smollm2-135m-esconv.toml, early stopping),
#              export it to models/solace-smollm2-esconv (= `make model`), score it on valid
#   tables     results/compare/tables.md (both papers' layouts, length-matched analysis)
#   test       generate + score the base, the old adapter and $WINNER (default: the exported
#              model, row solace-default-hybrid) on the ESConv test subset
#   cross      with the full ExTES file only: $WINNER trained on ExTES, both tested on both sets
set -euo pipefail
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
cd "$(dirname "$0")/.."
SOLACE=${SOLACE:-.venv/bin/solace}
PYTHON=${PYTHON:-.venv/bin/python}
JOBS=${JOBS:-2}
CONFIGS=configs/train/compare
RUNS=${RUNS:-runs/compare}
VALID=${VALID:-runs/compare-valid}
TEST=${TEST:-runs/compare-test}
# The adapter the bot shipped before this comparison (one epoch, raw history), kept for a row.
OLD_ADAPTER=${OLD_ADAPTER:-$RUNS/shipped-2026-11-adapter.gguf}
# The winner trained longer (the bot's default model) and where it is exported.
LONG_CONFIG=configs/train/smollm2-135m-esconv.toml
LONG_RUN=${LONG_RUN:-runs/smollm2-135m-esconv-hybrid}
DEFAULT_MODEL=${DEFAULT_MODEL:-models/solace-smollm2-esconv}
# In order of what the comparison needs most: every method with the served (hybrid) history,
# then strategies and raw history for today's LoRA, then the rest of the grid.
ROWS=(lora-r32-all-hybrid lora-r16-top12-hybrid full-hybrid adapter-hybrid
      lora-r16-top12-hybrid-strategies lora-r16-top12-raw lora-r32-all-hybrid-strategies
      lora-r32-all-raw full-hybrid-strategies adapter-hybrid-strategies full-raw adapter-raw)
export SOLACE PYTHON RUNS CONFIGS VALID TEST OLD_ADAPTER DEFAULT_MODEL LONG_RUN

train_one() {  # ROW, or wait:PID (a lane that first waits for a training already running)
  case "$1" in
    wait:*) while kill -0 "${1#wait:}" 2>/dev/null; do sleep 60; done; return 0 ;;
  esac
  [ -f "$RUNS/$1/manifest.json" ] && return 0  # trained already
  # an earlier `train` is still training this row (its lane is a wait:PID): never start twice
  pgrep -f "train $CONFIGS/$1.toml" > /dev/null && return 0
  nice -n 19 "$SOLACE" train "$CONFIGS/$1.toml" --resume >> "$RUNS/$1.log" 2>&1
}

# What `solace eval generate` needs to run a row: model flags, representation, strategies.
row_flags() {  # ROW -> prints flags
  local rep=hybrid strat=--no-strategies
  case "$1" in *-raw*) rep=raw ;; esac
  case "$1" in *strategies*) strat=--strategies ;; esac
  case "$1" in
    base-raw) echo "--representation raw --no-strategies"; return ;;
    base-hybrid) echo "--representation hybrid --no-strategies"; return ;;
    shipped-2026-11-hybrid) echo "--lora $OLD_ADAPTER --representation hybrid --no-strategies"; return ;;
    solace-default-hybrid) echo "--lora $DEFAULT_MODEL/adapter.gguf --representation hybrid --no-strategies"; return ;;
    lora-r16-top12-hybrid-hf) echo "--model $RUNS/lora-r16-top12-hybrid --representation hybrid --no-strategies"; return ;;
    lora-*) echo "--lora $RUNS/$1/export/adapter.gguf" ;;
    full-*) echo "--model $RUNS/$1/export/model-Q4_1.gguf" ;;
    adapter-*) echo "--model $RUNS/$1" ;;  # a run directory: the transformers backend
  esac
  echo "--representation $rep $strat"
}

export_one() {  # ROW: the GGUF llama.cpp runs (LoRA: the adapter; full: a merged Q4_1 model)
  case "$1" in
    lora-*) [ -f "$RUNS/$1/export/adapter.gguf" ] ||
      nice -n 19 "$SOLACE" export "$RUNS/$1" --adapter-only --no-verify --out "$RUNS/$1/export" ;;
    full-*) [ -f "$RUNS/$1/export/model-Q4_1.gguf" ] ||
      nice -n 19 "$SOLACE" export "$RUNS/$1" --quant Q4_1 --no-verify --out "$RUNS/$1/export" ;;
  esac
}

evaluate_one() {  # NAME [CONFIG OUT]: generate (resumable) and score when new rows came
  local name=$1 config=${2:-configs/eval/compare-valid.toml} out=${3:-$VALID}
  case "$name" in lora-*|full-*|adapter-*) [ -f "$RUNS/${name%-hf}/manifest.json" ] || return 0 ;; esac
  # the exported model only once it is the longer run's (models/ holds the old adapter before)
  case "$name" in solace-default-*)
    grep -q "\"path\": \"$LONG_RUN\"" "$DEFAULT_MODEL/manifest.json" 2>/dev/null || return 0 ;;
  esac
  case "$name" in *-hf) ;; *) export_one "$name" ;; esac
  # shellcheck disable=SC2046  # the flags are words
  nice -n 19 "$SOLACE" eval generate --config "$config" $(row_flags "$name") \
    --out "$out/$name" --no-progress
  if [ ! -f "$out/$name/metrics.json" ] || [ "$out/$name/generations.jsonl" -nt "$out/$name/metrics.json" ]; then
    OMP_NUM_THREADS=1 nice -n 19 "$SOLACE" eval metrics "$out/$name" --config "$config"
  fi
}
export -f train_one row_flags export_one evaluate_one

EVAL_ROWS=(base-raw base-hybrid shipped-2026-11-hybrid "${ROWS[@]}" lora-r16-top12-hybrid-hf)

train() {  # WAIT="PID PID" first waits for trainings started by an earlier `train`
  mkdir -p "$RUNS"
  { for pid in ${WAIT:-}; do echo "wait:$pid"; done; printf '%s\n' "${ROWS[@]}"; } | xargs -P "$JOBS" -L 1 bash -c 'train_one "$1" || echo "FAILED: $1 (see $RUNS/$1.log)"' _
}

evaluate() {
  mkdir -p "$VALID"
  printf '%s\n' "${EVAL_ROWS[@]}" | xargs -P "$JOBS" -L 1 bash -c \
    'evaluate_one "$1" >> "$VALID/$1.log" 2>&1 || echo "FAILED: $1 (see $VALID/$1.log)"' _
}

scored() {  # how many eval rows have metrics
  local n=0
  for name in "${EVAL_ROWS[@]}"; do [ -f "$VALID/$name/metrics.json" ] && n=$((n + 1)); done
  echo "$n"
}

watch() {
  while [ "$(scored)" -lt "${#EVAL_ROWS[@]}" ]; do
    evaluate
    echo "$(date -u +%FT%TZ): $(scored) of ${#EVAL_ROWS[@]} rows scored"
    [ "$(scored)" -lt "${#EVAL_ROWS[@]}" ] && sleep 300
  done
}

long() {  # `make model`, resumable, then the exported model on valid
  if pgrep -f "train $LONG_CONFIG" > /dev/null; then echo "already training $LONG_RUN"; return 0; fi
  nice -n 19 "$SOLACE" train "$LONG_CONFIG" --resume >> "$LONG_RUN.log" 2>&1
  [ -f "$LONG_RUN/manifest.json" ] || { echo "still training: rerun to continue"; return 0; }
  [ "$DEFAULT_MODEL/manifest.json" -nt "$LONG_RUN/manifest.json" ] ||
    nice -n 19 "$SOLACE" export "$LONG_RUN" -c configs/export/smollm2-adapter.toml \
      --out "$DEFAULT_MODEL" >> "$LONG_RUN.export.log" 2>&1
  mkdir -p "$VALID"
  evaluate_one solace-default-hybrid >> "$VALID/solace-default-hybrid.log" 2>&1
}

tables() {
  "$PYTHON" -m evaluation.compare_doc --valid "$VALID" --test "$TEST" --train-runs "$RUNS" \
    --long-run "$LONG_RUN" --long-config "$LONG_CONFIG" --out results/compare
}

test_set() {  # [WINNER=<row>] bash results/compare.sh test (default: the exported model)
  mkdir -p "$TEST"
  printf '%s\n' base-hybrid shipped-2026-11-hybrid "${WINNER:-solace-default-hybrid}" base-raw | xargs -P "$JOBS" -L 1 bash -c \
    'evaluate_one "$1" configs/eval/compare-test.toml "$TEST" >> "$TEST/$1.log" 2>&1 || echo "FAILED: $1"' _
}

cross() {  # WINNER=<row>: train ESConv / test ExTES and back, when the full ExTES file is here
  : "${WINNER:?set WINNER to the row chosen on valid}"
  local extes="${SOLACE_DATA_DIR:-../shared/data}/extes/ExTES.json"
  if [ ! -f "$extes" ]; then
    echo "no cross-dataset rows: $extes is not here (only the 11-dialogue fragment)"; return 0
  fi
  local row="$WINNER-extes"
  [ -f "$RUNS/$row/manifest.json" ] || nice -n 19 "$SOLACE" train "$CONFIGS/$WINNER.toml" --resume \
    --set "output_dir='$RUNS/$row'" --set "dataset='extes:train'" --set "eval_dataset=''" \
    --set "strategy_conditioning='none'" >> "$RUNS/$row.log" 2>&1
  export_one "$row"
  mkdir -p "$TEST"
  for model in "$WINNER" "$row"; do
    for data in esconv:test extes:test; do
      # shellcheck disable=SC2046
      nice -n 19 "$SOLACE" eval generate --config configs/eval/compare-test.toml \
        $(row_flags "$model") --data "$data" --out "$TEST/cross-$model-${data%%:*}" --no-progress
      nice -n 19 "$SOLACE" eval metrics "$TEST/cross-$model-${data%%:*}" --config configs/eval/compare-test.toml
    done
  done
}

case "${1:-}" in
  train) train ;;
  evaluate) evaluate ;;
  watch) watch ;;
  long) long ;;
  tables) tables ;;
  test) test_set ;;
  cross) cross ;;
  *) sed -n '2,/^set /p' "$0" | grep '^#' >&2; exit 2 ;;
esac
