#!/usr/bin/env bash
# Which training text generalises: the positional encoder (configs/encoder/positional.yaml,
# N = 8, 300 steps x 16 texts) trained on four mixes of the stream, each scored on the same
# held-out prose windows, random token sequences and random words (128 of each).
#   prose              prose windows only
#   tokens             random tokens at the prose's frequencies only (never a real sentence)
#   prose+tokens       half and half (the shipped recipe)
#   prose+tokens+words a third each
# JSON lines to mix.jsonl and tables to mix.md beside this file.
#   bash docs/research/positional-encoder/mix.sh        # ~7 min a mix here
set -euo pipefail
cd "$(dirname "$0")/../../.."
py=${PY:-.venv/bin/python}
OUT=${OUT:-outputs/encoder/positional-mix}
here=docs/research/positional-encoder
run() {  # name, stream mix
  [ -f $OUT/$1/encoder.pt ] || $py -m encoder.train --config configs/encoder/positional.yaml \
      out=$OUT/$1 "data.stream=$2" train.steps=300 train.eval_every=300 train.save_every=300 \
      train.warmup_steps=10 data.eval_texts=64 mlflow=false | tail -n 1 >&2
  $py -m encoder.evaluate --checkpoint $OUT/$1 texts=stream "stream_kinds=[prose,tokens,words]" \
      limit=128 mlflow=false out=$OUT/eval-$1 2>/dev/null > $OUT/eval-$1.txt
  { echo "## $1"; head -n -1 $OUT/eval-$1.txt; } >> $here/mix.md
  tail -n 1 $OUT/eval-$1.txt | $py scripts/tag_json.py mix=$1 >> $here/mix.jsonl
}
mkdir -p $OUT
run prose "{prose: 1}"
run tokens "{tokens: 1}"
run prose+tokens "{prose: 0.5, tokens: 0.5}"
run prose+tokens+words "{prose: 1, tokens: 1, words: 1}"
