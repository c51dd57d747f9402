#!/usr/bin/env bash
# Training signal: MiniLM encoders (the best kind of variants.sh) trained exactly as its
# minilm-decode variant (80 steps x 16 texts at N = 8, encoder corpus + raw text), each with
# another loss, then scored on every held-out corpus text at N = 8 and 16 beside the baselines
# (as variants_eval.sh). JSON lines are appended to signal.jsonl, tables to signal.md.
#   minilm-nearest4   loss.kind=nearest: regress the prediction onto where 4 Adam steps (lr 0.2,
#                     m frozen) of its own decode loss take it (~15 min: 5 LLM passes a step)
#   minilm-focal2     decode loss with focal weighting, gamma 2 (~4 min)
#   bash docs/research/encoder/signal.sh [RUN ...]      # default: every run
set -euo pipefail
cd "$(dirname "$0")/../../.."
py=${PY:-.venv/bin/python}
OUT=outputs/encoder/variants
here=docs/research/encoder
declare -A RUNS=(
  [minilm-nearest4]="loss.kind=nearest loss.nearest_steps=4"
  [minilm-focal2]="loss.focal_gamma=2"
)
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(minilm-nearest4 minilm-focal2)
for name in "${names[@]}"; do
  [ -n "${RUNS[$name]+x}" ] || { echo "error: unknown run $name" >&2; exit 2; }
  echo "== $name: ${RUNS[$name]}" >&2
  # shellcheck disable=SC2086
  $py -m encoder.train --config configs/encoder/default.yaml out=$OUT/$name "data.lengths=[8]" \
      data.eval_texts=48 train.steps=80 train.eval_every=80 train.save_every=80 \
      train.warmup_steps=8 model.kind=hf model.hf_name=minilm train.lr=0.0001 ${RUNS[$name]} \
    | tail -1 >&2
  $py -m encoder.evaluate --checkpoint $OUT/$name "lengths=[8,16]" mlflow=false \
      out=$OUT/eval-$name 2>/dev/null > $OUT/eval-$name.txt
  { echo "## $name"; head -n -1 $OUT/eval-$name.txt; } >> $here/signal.md
  tail -1 $OUT/eval-$name.txt | $py scripts/tag_json.py variant=$name >> $here/signal.jsonl
done
