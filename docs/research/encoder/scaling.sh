#!/usr/bin/env bash
# Is the encoder data-, step- or capacity-bound? Encoders trained with the decode loss on raw
# text only (britannica + random words, N = 8; 160 steps x 16 texts), held-out accuracy every
# 20 steps on the encoder corpus's 75 held-out texts (whole contexts held out):
#   data   MiniLM (the best kind at 80 steps) from pools of 32, 256 and 2048 windows per source
#          (at 160 x 16 = 2560 texts seen: ~40 passes, 5 passes, 0.6 of a pass)
#   size   scratch transformers over the frozen embeddings, 1 x 128, 2 x 256, 4 x 512
#          (layers x width), on the 2048-window pool
# then the curves (scaling-data.png, scaling-size.png; also logged to MLflow, experiment
# `encoder`, runs scaling-data / scaling-size) and one JSON line per run (scaling.jsonl).
#   bash docs/research/encoder/scaling.sh          # ~35 min on a 2-core CPU; reruns skip done runs
set -euo pipefail
cd "$(dirname "$0")/../../.."
py=${PY:-.venv/bin/python}
OUT=${OUT:-outputs/encoder/scaling}
STEPS=${STEPS:-160}
here=docs/research/encoder
common=(--config configs/encoder/default.yaml "data.lengths=[8]" data.raw_fraction=1.0
        data.eval_texts=0 train.steps=$STEPS train.eval_every=20 train.save_every=$STEPS
        train.warmup_steps=8)
train() {  # name, overrides...
  local name=$1; shift
  echo "== $name" >&2
  $py -m encoder.train "${common[@]}" out=$OUT/$name "$@" | tail -n 1 >&2
}
for pool in 32 256 2048; do
  train minilm-pool$pool model.kind=hf model.hf_name=minilm train.lr=0.0001 \
      train.head_lr=0.001 data.raw_pool=$pool
done
for size in 1x128 2x256 4x512; do
  train scratch-$size model.kind=scratch model.scratch_layers=${size%x*} \
      model.scratch_dim=${size#*x} data.raw_pool=2048
done
{
  $py $here/scaling_plot.py 32=$OUT/minilm-pool32 256=$OUT/minilm-pool256 \
      2048=$OUT/minilm-pool2048 --name scaling-data --out $here/scaling-data.png \
      --title "MiniLM encoder, decode loss on raw text, N=8: training windows per source"
  $py $here/scaling_plot.py 1x128=$OUT/scratch-1x128 2x256=$OUT/scratch-2x256 \
      4x512=$OUT/scratch-4x512 --name scaling-size --out $here/scaling-size.png \
      --title "scratch encoder (layers x width), 2048 windows per source, N=8"
} > $here/scaling.jsonl
cat $here/scaling.jsonl
