#!/usr/bin/env bash
# The loop "encoder -> faster corpus -> better encoder", round by round, at a 2-core CPU's scale.
# Every corpus is configs/data_gen/speedup.yaml (48 windows of Shakespeare's plays + 16 random-
# word texts, N = 8, m frozen at the learned start's m0) with its own seed, so no two share texts.
#   round 0   build corpus 0 from the learned start (e0); train encoder E0 on it
#   round r   build corpus r side by side from e0 and from E(r-1)'s e (eval.bench_corpus:
#             fitting steps of both and their ratio), then train E(r) on corpora 0..r, corpus r
#             as built from the encoder's e
# Each E is MiniLM (the best kind, scaling.sh) trained 160 steps x 16 texts with loss mix:
# decode loss on raw Britannica + random words, regression onto the corpora's e's. Every E is
# scored on one fixed corpus of 64 more texts (seed 200) that no round trains on
# (encoder.evaluate texts=all). JSON lines to loop.jsonl; table loop.md.
#   bash docs/research/encoder/loop.sh [ROUNDS]      # default 2 rounds after round 0: ~50 min
set -euo pipefail
cd "$(dirname "$0")/../../.."
py=${PY:-.venv/bin/python}
OUT=${OUT:-outputs/encoder/loop}
ROUNDS=${1:-2}
here=docs/research/encoder
seed() { echo $((100 + $1)); }
build() {  # out, seed
  $py -m data_gen.build --config configs/data_gen/speedup.yaml out=$1 seed=$2 mlflow=false \
    | tail -n 1 >&2
}
train() {  # round, corpus, extra corpora (YAML list)
  $py -m encoder.train --config configs/encoder/default.yaml out=$OUT/E$1 data.corpus=$2 \
      "data.extra_corpora=$3" "data.lengths=[8]" data.raw_pool=2048 loss.kind=mix \
      model.kind=hf model.hf_name=minilm train.lr=0.0001 train.head_lr=0.001 \
      train.steps=160 train.eval_every=160 train.save_every=160 train.warmup_steps=8 \
    | tail -n 1 >&2
}
score() {  # round
  $py -m encoder.evaluate --checkpoint $OUT/E$1 --corpus $OUT/heldout texts=all mlflow=false \
      out=$OUT/eval-E$1 2>/dev/null > $OUT/eval-E$1.txt
  { echo "## E$1 on the fixed held-out corpus"; head -n -1 $OUT/eval-E$1.txt; } >> $here/loop.md
  tail -n 1 $OUT/eval-E$1.txt | $py scripts/tag_json.py round=$1 what=encoder >> $here/loop.jsonl
}
mkdir -p $OUT
[ -f $OUT/heldout/manifest.json ] || build $OUT/heldout 200
echo "== round 0" >&2
[ -f $OUT/C0/manifest.json ] || build $OUT/C0 "$(seed 0)"
train 0 $OUT/C0 "[]"
score 0
extra=""
for r in $(seq 1 "$ROUNDS"); do
  echo "== round $r" >&2
  $py -m eval.bench_corpus build.seed="$(seed $r)" out=$OUT/bench$r mlflow=false \
      "arms=[{name: start}, {name: encoder, init_from: $OUT/E$((r - 1))}]" 2>$OUT/bench$r.log \
    | tail -n 1 | $py scripts/tag_json.py round=$r what=build >> $here/loop.jsonl
  { echo "## round $r: corpus from e0 and from E$((r - 1))"; cat $OUT/bench$r/table.md; } \
    >> $here/loop.md
  extra="${extra:+$extra, }$OUT/bench$r/corpora/encoder"
  train "$r" $OUT/C0 "[$extra]"
  score "$r"
done
