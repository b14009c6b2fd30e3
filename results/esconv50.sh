#!/usr/bin/env bash
# Solace's ESConv table (results/esconv50/): SmolLM2-135M-Instruct base, and base + Solace's
# ESConv adapter when models/solace-smollm2-esconv/adapter.gguf exists, each with raw / keypos /
# nostopwords / hybrid context, on a fixed 50-dialogue subset of ESConv's test split.
#
# Generation grows the subset STEP dialogues at a time across all four representations, so that
# if it is stopped every configuration covers the same dialogues; rerunning resumes.
# Usage: SOLACE_DATA_DIR=../shared/data bash results/esconv50.sh [generate|score|all]
set -euo pipefail
# llama.cpp uses OpenMP; on a shared 2-core machine spinning workers starve each other (measured
# 3.3 tok/s with 1 thread vs 7.0 with 2 threads + passive waiting under load 13).
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
cd "$(dirname "$0")/.."
SOLACE=${SOLACE:-.venv/bin/solace}
RUNS=${RUNS:-runs/esconv50}
OUT=${OUT:-results/esconv50}
STEP=${STEP:-5}
TOTAL=${TOTAL:-50}
ADAPTER=models/solace-smollm2-esconv/adapter.gguf
REPS=(raw keypos nostopwords hybrid)
MODELS=(base)
[ -f "$ADAPTER" ] && MODELS+=(lora)

generate() {
  for n in $(seq "$STEP" "$STEP" "$TOTAL"); do
    for model in "${MODELS[@]}"; do
      for rep in "${REPS[@]}"; do
        extra=()
        [ "$model" = lora ] && extra=(--lora "$ADAPTER")
        "$SOLACE" eval generate --config configs/eval/esconv50.toml --representation "$rep" \
          --dialogues "$n" --out "$RUNS/$model-$rep" --no-progress "${extra[@]}"
      done
    done
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
  for run in "${runs[@]}"; do
    "$SOLACE" eval metrics "$run" --config configs/eval/esconv50.toml --max-dialogues "$N"
    "$SOLACE" eval toxicity "$run" --config configs/eval/esconv50.toml --max-dialogues "$N"
  done
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
