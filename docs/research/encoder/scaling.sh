#!/usr/bin/env bash
# Is the encoder data-, step- or capacity-bound? MiniLM encoders (the best kind at 80 steps)
# trained on raw text only (decode loss) from pools of 32, 256 and 2048 windows per source
# (britannica + random words, N = 8), 160 steps each, held-out accuracy every 40 steps on the
# encoder corpus's held-out texts; then the curves (scaling.png, also logged to MLflow).
#   bash docs/research/encoder/scaling.sh          # ~20 min on a 2-core CPU
set -euo pipefail
cd "$(dirname "$0")/../../.."
py=${PY:-.venv/bin/python}
OUT=outputs/encoder/scaling
for pool in 32 256 2048; do
  echo "== raw_pool=$pool" >&2
  $py -m encoder.train --config configs/encoder/default.yaml out=$OUT/pool$pool \
      model.kind=hf model.hf_name=minilm train.lr=0.0001 train.head_lr=0.001 \
      "data.lengths=[8]" data.raw_fraction=1.0 data.raw_pool=$pool data.eval_texts=0 \
      train.steps=160 train.eval_every=40 train.save_every=160 train.warmup_steps=8 | tail -n 1
done
$py docs/research/encoder/scaling_plot.py $OUT/pool32 $OUT/pool256 $OUT/pool2048 \
    --out docs/research/encoder/scaling.png
