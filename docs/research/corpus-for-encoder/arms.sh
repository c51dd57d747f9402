#!/usr/bin/env bash
# What the solution space gives the positional encoder (issue #36 item 4), at equal training
# steps (and about equal wall time) from scratch: configs/encoder/quick.yaml (N = 8, 250 steps
# x 16 stream texts) trained three ways, then each scored on the same held-out stream texts.
#   decode   the decode loss on the stream alone (quick.yaml as shipped)
#   mix      + half of each batch from the corpus with a regression term to its solutions
#            (weight 1, then 0.01)
#   stage    the corpus as first stage: ridge least squares of the linear code on the corpus's
#            (text, e*) pairs (first_stage.py), then quick.yaml's decode loss from there
# The corpus: 192 Britannica windows of 8 tokens fitted from e0 with m frozen at m0 (the encoder
# corpus's recipe, configs/data_gen/encoder.yaml), the e's an untrained encoder starts beside.
# JSON lines to arms.jsonl beside this file. ~30 min on one core.
#   bash docs/research/corpus-for-encoder/arms.sh
set -euo pipefail
cd "$(dirname "$0")/../../.."
here=docs/research/corpus-for-encoder
py=${PY:-.venv/bin/python}
export OMP_NUM_THREADS=1
O=outputs/corpus-for-encoder
corpus=$O/corpus
tag() { $py scripts/tag_json.py "$@" >> $here/arms.jsonl; }
{ time $py -m data_gen.build --config configs/data_gen/encoder.yaml out=$corpus threads=1 \
    "sources=[{name: britannica, count: 192, lengths: [8]}]" pairs_per_chunk=0 mlflow=false \
    2>/dev/null | tail -n 1 | tag arm=corpus; } 2>> $here/arms.time
train() {  # name, overrides...
  local name=$1; shift
  { time $py -m encoder.train --config configs/encoder/quick.yaml out=$O/$name "$@" \
      2>/dev/null | tail -n 1 | tag arm=$name; } 2>> $here/arms.time
}
score() {  # name, checkpoint
  $py -m encoder.evaluate --checkpoint "$2" texts=stream limit=256 mlflow=false \
      out=$O/eval-$1 2>/dev/null > /dev/null
  $py -c "import json, sys; m = json.load(open(sys.argv[1]))['methods']['encoder']
print(json.dumps({k: [round(v['acc'], 4), round(v['exact'], 4), v['texts']] for k, v in m.items()}))" \
      "$O/eval-$1/results.json" | tag arm=$1 set=stream-n8
}
train template train.steps=1 train.eval_every=1 train.save_every=1 data.eval_texts=8
$py $here/first_stage.py $corpus $O/template/encoder.pt $O/stage.pt 0.1 | tee -a $here/arms.time
score stage-alone $O/stage.pt
train decode
train mix loss.kind=mix data.corpus=$corpus
train stage init_from=$O/stage.pt
# mix's regression term at weight 1 drowns the decode loss (it ends at e0's accuracy), so
# once more at 0.01
train mix-w0.01 loss.kind=mix loss.regress_weight=0.01 data.corpus=$corpus
for a in decode mix stage mix-w0.01; do score $a $O/$a; done
