#!/usr/bin/env bash
# Curriculum over lengths: MiniLM encoders (the best kind, see scaling.sh) trained with the decode
# loss on raw text only (britannica + random words, m and offset from the learned start, no
# corpus needed) at N = 8 and 16 for 160 steps x 16 texts, either on both lengths from the
# first step (mixed) or on N = 8 alone until step 80 and both after (curriculum: data.curriculum
# = [0, 80]); each then scored by encoder.evaluate on the first 256 held-out raw windows of
# both lengths; the held-out curves of both runs go to curriculum.png (MLflow run curriculum).
# JSON lines to curriculum.jsonl, tables to curriculum.md. SEED=k repeats both with another
# initial head and data seed (its own held-out windows), into RUN-seedk.
#   bash docs/research/encoder/curriculum.sh [RUN ...]   # ~15 min on a 2-core CPU
#   SEED=1 bash docs/research/encoder/curriculum.sh
set -euo pipefail
cd "$(dirname "$0")/../../.."
py=${PY:-.venv/bin/python}
OUT=${OUT:-outputs/encoder/curriculum}
here=docs/research/encoder
SEED=${SEED:-0}
sfx=""
[ "$SEED" = 0 ] || sfx="-seed$SEED"
declare -A RUNS=([mixed]="" [curriculum]="data.curriculum=[0,80]")
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(mixed curriculum)
for name in "${names[@]}"; do
  [ -n "${RUNS[$name]+x}" ] || { echo "error: unknown run $name" >&2; exit 2; }
  echo "== $name$sfx: ${RUNS[$name]}" >&2
  # shellcheck disable=SC2086
  $py -m encoder.train --config configs/encoder/default.yaml out=$OUT/$name$sfx data.corpus= \
      m=start "data.lengths=[8,16]" data.raw_pool=2048 data.eval_texts=64 model.kind=hf \
      model.hf_name=minilm train.lr=0.0001 train.head_lr=0.001 train.steps=160 \
      train.eval_every=40 train.save_every=160 train.warmup_steps=8 seed=$SEED \
      data.seed=$SEED ${RUNS[$name]} \
    | tail -n 1 >&2
  $py -m encoder.evaluate --checkpoint $OUT/$name$sfx "lengths=[8,16]" limit=256 \
      mlflow=false out=$OUT/eval-$name$sfx 2>/dev/null > $OUT/eval-$name$sfx.txt
  { echo "## $name$sfx"; head -n -1 $OUT/eval-$name$sfx.txt; } >> $here/curriculum.md
  tail -1 $OUT/eval-$name$sfx.txt | $py scripts/tag_json.py run=$name seed=$SEED \
    >> $here/curriculum.jsonl
done
$py $here/scaling_plot.py mixed=$OUT/mixed$sfx curriculum=$OUT/curriculum$sfx \
    --name curriculum$sfx --out $here/curriculum$sfx.png \
    --title "MiniLM encoder, raw text, N=8 and 16: both lengths from step 0 vs N=16 from step 80" \
  > $here/curriculum$sfx-curves.jsonl
