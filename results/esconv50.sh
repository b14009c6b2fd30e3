#!/usr/bin/env bash
# Solace's ESConv table (results/esconv50/): SmolLM2-135M-Instruct base, and base + Solace's
# ESConv adapter when models/solace-smollm2-esconv/adapter.gguf exists, each with raw / keypos /
# nostopwords / hybrid context, on a fixed 50-dialogue subset of ESConv's test split.
#
# Generation grows the subset STEP dialogues at a time across all configurations, so that if it
# is stopped every configuration covers the same dialogues; rerunning resumes. JOBS commands run
# side by side, each on one thread (configs/eval/esconv50.toml): for this 135M model one process
# per core is faster than one process on two cores.
# Usage: SOLACE_DATA_DIR=../shared/data [JOBS=2] bash results/esconv50.sh [generate|score|all]
set -euo pipefail
# llama.cpp uses OpenMP; on a shared machine spinning workers starve each other.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
cd "$(dirname "$0")/.."
SOLACE=${SOLACE:-.venv/bin/solace}
RUNS=${RUNS:-runs/esconv50}
OUT=${OUT:-results/esconv50}
STEP=${STEP:-5}
TOTAL=${TOTAL:-50}
JOBS=${JOBS:-$(nproc)}
ADAPTER=models/solace-smollm2-esconv/adapter.gguf
REPS=(raw keypos nostopwords hybrid)
MODELS=(base)
[ -f "$ADAPTER" ] && MODELS+=(lora)

generate_one() {  # N MODEL REP
  local extra=()
  [ "$2" = lora ] && extra=(--lora "$ADAPTER")
  "$SOLACE" eval generate --config configs/eval/esconv50.toml --representation "$3" \
    --dialogues "$1" --out "$RUNS/$2-$3" --no-progress "${extra[@]}"
}
score_one() {  # RUN (N from the environment)
  "$SOLACE" eval metrics "$1" --config configs/eval/esconv50.toml --max-dialogues "$N" &&
    "$SOLACE" eval toxicity "$1" --config configs/eval/esconv50.toml --max-dialogues "$N"
}
export -f generate_one score_one
export SOLACE RUNS ADAPTER

generate() {
  for n in $(seq "$STEP" "$STEP" "$TOTAL"); do
    for rep in "${REPS[@]}"; do  # base and LoRA alternate: base replies are ~3x longer
      for model in "${MODELS[@]}"; do echo "$n $model $rep"; done
    done | xargs -P "$JOBS" -L 1 bash -c 'generate_one "$@"' _
  done
}

score() {
  runs=()
  for model in "${MODELS[@]}"; do
    for rep in "${REPS[@]}"; do
      [ -f "$RUNS/$model-$rep/generations.jsonl" ] && runs+=("$RUNS/$model-$rep")
    done
  done
  # Score every run on the same dialogues: the longest subset prefix all runs have finished.
  N=${N:-$(.venv/bin/python -c 'import sys; from evaluation.runs import complete_prefix; print(min(complete_prefix(r) for r in sys.argv[1:]))' "${runs[@]}")}
  echo "scoring ${#runs[@]} runs on the first $N dialogues of the subset"
  # JOBS runs at a time, each on one thread (llama.cpp for PPL, torch for BERTScore)
  printf '%s\n' "${runs[@]}" | OMP_NUM_THREADS=1 N=$N xargs -P "$JOBS" -L 1 bash -c 'score_one "$1"' _
  mkdir -p "$OUT"
  "$SOLACE" eval toxicity --data esconv:test --config configs/eval/esconv50.toml --out "$OUT/toxicity_esconv_test.json"
  "$SOLACE" eval report "${runs[@]}" --out "$OUT" --title "Solace on ESConv (fixed 50-dialogue test subset)" \
    --note "SmolLM2-135M-Instruct (Q4_1 GGUF), not the papers' 7B models: compare trends, not values." \
    --note "BERTScore and Vector Extrema use all-MiniLM-L6-v2 (roberta-large and GloVe are unavailable offline)."
  for run in "${runs[@]}"; do
    name=$(basename "$run")
    mkdir -p "$OUT/runs/$name"
    cp "$run"/manifest.json "$run"/metrics.json "$run"/metrics.md "$run"/toxicity.json "$OUT/runs/$name/"
  done
}

case "${1:-all}" in
  generate) generate ;;
  score) score ;;
  all) generate; score ;;
  *) echo "usage: $0 [generate|score|all]" >&2; exit 2 ;;
esac
