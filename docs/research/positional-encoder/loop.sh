#!/usr/bin/env bash
# The loop "encoder -> faster corpus -> better encoder" with a positional encoder, two rounds.
#   round r   build a corpus of 64 new texts (configs/data_gen/speedup.yaml: Shakespeare's plays
#             and random words at N = 8, m frozen at m0, seed 100 + r) side by side from e0 and
#             from E(r-1)'s e at the refinement lr (eval.bench_corpus, tail restarts off in
#             both arms: fitting steps of both and their ratio); then E(r) = E(r-1) trained
#             STEPS more steps with loss mix: the decode loss on the stream plus regression
#             onto the e's of every corpus built from the encoders so far (data.corpus +
#             data.extra_corpora), which are solutions found from the encoder's own starts
# E0 is the encoder given as $1 (default: the N = 8 run of configs/encoder/positional.yaml).
# Every E is scored on one fixed corpus of 64 more texts (seed 200) no round trains on
# (encoder.evaluate texts=all). JSON lines to loop.jsonl, tables to loop.md beside this file.
#   bash docs/research/positional-encoder/loop.sh [E0] [ROUNDS]     # ~15 min a round here
set -euo pipefail
cd "$(dirname "$0")/../../.."
py=${PY:-.venv/bin/python}
OUT=${OUT:-outputs/encoder/positional-loop}
E0=${1:-outputs/encoder/positional}
ROUNDS=${2:-2}
STEPS=${STEPS:-300}
LR=${LR:-0.05}
here=docs/research/positional-encoder
build() {  # out, seed
  $py -m data_gen.build --config configs/data_gen/speedup.yaml out=$1 seed=$2 mlflow=false \
      tail_restarts=0 | tail -n 1 >&2
}
score() {  # name, checkpoint
  $py -m encoder.evaluate --checkpoint $2 --corpus $OUT/heldout texts=all mlflow=false \
      out=$OUT/eval-$1 2>/dev/null > $OUT/eval-$1.txt
  { echo "## $1 on the fixed held-out corpus"; head -n -1 $OUT/eval-$1.txt; } >> $here/loop.md
  tail -n 1 $OUT/eval-$1.txt | $py scripts/tag_json.py round=$1 what=encoder >> $here/loop.jsonl
}
mkdir -p $OUT
[ -f $OUT/heldout/manifest.json ] || build $OUT/heldout 200
prev=$E0
score E0 $E0
extra=""
for r in $(seq 1 "$ROUNDS"); do
  echo "== round $r" >&2
  $py -m eval.bench_corpus build.seed=$((100 + r)) out=$OUT/bench$r mlflow=false \
      "arms=[{name: start, tail_restarts: 0}, {name: encoder, init_from: $prev, tail_restarts: 0, recipe_overrides: {lr: $LR}}]" \
      2>$OUT/bench$r.log | tail -n 1 | $py scripts/tag_json.py round=$r what=build >> $here/loop.jsonl
  { echo "## round $r: corpus from e0 and from E$((r - 1))"; cat $OUT/bench$r/table.md; } \
    >> $here/loop.md
  corpus=$OUT/bench$r/corpora/encoder
  $py -m encoder.train --config configs/encoder/positional.yaml out=$OUT/E$r init_from=$prev \
      data.corpus=$corpus "data.extra_corpora=[${extra}]" m=corpus loss.kind=mix \
      data.raw_fraction=0.9 \
      train.steps=$STEPS train.warmup_steps=10 train.eval_every=$STEPS \
      train.save_every=$STEPS mlflow=false | tail -n 1 >&2
  extra="${extra:+$extra, }$corpus"
  prev=$OUT/E$r
  score "E$r" $prev
done
