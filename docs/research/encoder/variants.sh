#!/usr/bin/env bash
# Encoder variants at N = 8 on the encoder corpus + raw text, the same data, steps and batch for
# each (2-core CPU, ~4-6 min each, ~40 min in all). Each run's last JSON line goes to variants.jsonl.
#   bash docs/research/encoder/variants.sh [STEPS]
set -euo pipefail
cd "$(dirname "$0")/../../.."
STEPS=${1:-80}
OUT=outputs/encoder/variants
mkdir -p $OUT
run() {  # name, overrides...
  local name=$1; shift
  echo "== $name: $*" >&2
  .venv/bin/python -m encoder.train --config configs/encoder/default.yaml out=$OUT/$name \
      "data.lengths=[8]" data.eval_texts=48 train.steps=$STEPS train.eval_every=$STEPS \
      train.save_every=$STEPS train.warmup_steps=8 "$@" | tail -1 \
    | .venv/bin/python scripts/tag_json.py variant=$name \
    >> $OUT/variants.jsonl
}
run lora-mean-decode
run lora-last-decode model.pooling=last
run lora-query-decode model.pooling=query
run lora-mean-regress loss.kind=regress
run lora-mean-mix loss.kind=mix
run lora-mean-decode-m-learned m=learned
run scratch-decode model.kind=scratch train.lr=0.001 train.head_lr=0.001
run minilm-decode model.kind=hf model.hf_name=minilm train.lr=0.0001
