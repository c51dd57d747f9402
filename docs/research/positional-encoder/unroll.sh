#!/usr/bin/env bash
# Semi-amortised training: does training on the decode loss after K refinement steps make the
# encoder a better start for refinement? From a trained encoder E (default: the N = 8 run of
# configs/encoder/positional.yaml) two continuations of STEPS steps each:
#   more     the plain decode loss (a control for the extra training itself)
#   unroll   the decode loss plus the decode loss after K steps of Adam at LR (train.unroll_*)
# then the refinement curve of E, more and unroll on the same 64 held-out prose windows
# (evaluate.sh's curve at refine_lr LR). JSON lines to unroll.jsonl beside this file.
#   bash docs/research/positional-encoder/unroll.sh [E] [K] [STEPS] [LR]   # ~25 min here
set -euo pipefail
cd "$(dirname "$0")/../../.."
py=${PY:-.venv/bin/python}
E=${1:-outputs/encoder/positional}; K=${2:-3}; STEPS=${3:-150}; LR=${4:-0.05}
OUT=${OUT:-outputs/encoder/positional-unroll}
here=docs/research/positional-encoder
common=(--config configs/encoder/positional.yaml init_from=$E train.steps=$STEPS
        train.warmup_steps=5 train.eval_every=$STEPS train.save_every=$STEPS mlflow=false)
[ -f $OUT/more/encoder.pt ] || $py -m encoder.train "${common[@]}" out=$OUT/more | tail -n 1 >&2
[ -f $OUT/unroll/encoder.pt ] || $py -m encoder.train "${common[@]}" out=$OUT/unroll \
    train.unroll_steps=$K train.unroll_lr=$LR | tail -n 1 >&2
for name in base more unroll; do
  ck=$E; [ $name = base ] || ck=$OUT/$name
  $py -m encoder.evaluate --checkpoint $ck texts=stream "stream_kinds=[prose]" limit=64 \
      curve=true curve_texts=64 refine_lr=$LR mlflow=false out=$OUT/eval-$name 2>/dev/null \
    | tail -n 1 | $py scripts/tag_json.py encoder=$name unroll_steps=$K steps=$STEPS lr=$LR \
    >> $here/unroll.jsonl
done
