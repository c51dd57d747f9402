#!/usr/bin/env bash
# Curriculum over lengths: MiniLM encoders (the best kind, see scaling.sh) trained with the decode
# loss on raw text only (britannica + random words, m and offset from the learned start, no
# corpus needed) at N = 8 and 16 for 160 steps x 16 texts, either on both lengths from the
# first step (mixed) or on N = 8 alone until step 80 and both after (curriculum: data.curriculum
# = [0, 80]); each then scored by encoder.evaluate on the first 256 held-out raw windows of
# both lengths; the held-out curves of both runs go to curriculum.png (MLflow run curriculum).
# JSON lines to curriculum.jsonl, tables to curriculum.md.
#   bash docs/research/encoder/curriculum.sh [RUN ...]   # ~20 min on a 2-core CPU
set -euo pipefail
cd "$(dirname "$0")/../../.."
py=${PY:-.venv/bin/python}
OUT=${OUT:-outputs/encoder/curriculum}
here=docs/research/encoder
declare -A RUNS=([mixed]="" [curriculum]="data.curriculum=[0,80]")
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(mixed curriculum)
for name in "${names[@]}"; do
  [ -n "${RUNS[$name]+x}" ] || { echo "error: unknown run $name" >&2; exit 2; }
  echo "== $name: ${RUNS[$name]}" >&2
  # shellcheck disable=SC2086
  $py -m encoder.train --config configs/encoder/default.yaml out=$OUT/$name data.corpus= m=start \
      "data.lengths=[8,16]" data.raw_pool=2048 data.eval_texts=64 model.kind=hf \
      model.hf_name=minilm train.lr=0.0001 train.head_lr=0.001 train.steps=160 \
      train.eval_every=40 train.save_every=160 train.warmup_steps=8 ${RUNS[$name]} \
    | tail -n 1 >&2
  $py -m encoder.evaluate --checkpoint $OUT/$name "lengths=[8,16]" limit=256 mlflow=false \
      out=$OUT/eval-$name 2>/dev/null > $OUT/eval-$name.txt
  { echo "## $name"; head -n -1 $OUT/eval-$name.txt; } >> $here/curriculum.md
  tail -1 $OUT/eval-$name.txt | $py scripts/tag_json.py run=$name >> $here/curriculum.jsonl
done
$py $here/scaling_plot.py mixed=$OUT/mixed curriculum=$OUT/curriculum --name curriculum \
    --out $here/curriculum.png \
    --title "MiniLM encoder, raw text, N=8 and 16: both lengths from step 0 vs N=16 from step 80" \
  > $here/curriculum-curves.jsonl
