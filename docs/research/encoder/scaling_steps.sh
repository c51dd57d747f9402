#!/usr/bin/env bash
# The steps axis of scaling.sh: the MiniLM encoder trained 4x longer (640 steps x 16 texts) on
# a pool of 8192 windows per source, so that it sees no window twice (10240 of 16384), with
# held-out accuracy every 40 steps on the same 65 held-out texts; plotted beside scaling.sh's
# 160-step runs (scaling-steps.png, MLflow run scaling-steps), JSON lines to scaling-steps.jsonl.
#   bash docs/research/encoder/scaling_steps.sh     # ~25 min on a 2-core CPU; run scaling.sh first
set -euo pipefail
cd "$(dirname "$0")/../../.."
py=${PY:-.venv/bin/python}
OUT=${OUT:-outputs/encoder/scaling}
here=docs/research/encoder
echo "== minilm-pool8192-640" >&2
$py -m encoder.train --config configs/encoder/default.yaml out=$OUT/minilm-pool8192-640 \
    "data.lengths=[8]" data.raw_fraction=1.0 data.eval_texts=0 data.raw_pool=8192 \
    model.kind=hf model.hf_name=minilm train.lr=0.0001 train.head_lr=0.001 \
    train.steps=640 train.eval_every=40 train.save_every=160 train.warmup_steps=8 \
    | tail -n 1 >&2
$py $here/scaling_plot.py "2048 windows, 160 steps=$OUT/minilm-pool2048" \
    "8192 windows, 640 steps=$OUT/minilm-pool8192-640" --name scaling-steps \
    --out $here/scaling-steps.png \
    --title "MiniLM encoder, decode loss on raw text, N=8: longer training on more windows" \
    > $here/scaling-steps.jsonl
cat $here/scaling-steps.jsonl
