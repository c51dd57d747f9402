#!/usr/bin/env bash
# Score an encoder on every held-out set this page reports, logged to MLflow as NAME-*:
#   heldout   the encoder corpus's held-out texts at the encoder's lengths (the README table's
#             texts; kNN, mean, start, random and the fit beside it)
#   stream    LIMIT held-out prose windows, random token sequences and random words per length
#   sentences configs/eval/sentences.txt (64 sentences of 15-20 tokens), when the encoder
#             takes them (no position limit, or 20 positions or more)
#   curve     accuracy / exact after K = 0..20 refinement steps, from the encoder's e (Adam at
#             each lr of LRS) and from e0, on 64 held-out prose windows per length
# Logs and tables to docs/research/positional-encoder/eval-NAME-*.txt. EXTRA adds arguments
# to every call (e.g. EXTRA=dtype=fp32 for the H200's bf16 checkpoints); CURVES_ONLY=1 runs
# only the curves.
#   bash docs/research/positional-encoder/evaluate.sh CHECKPOINT NAME [LRS] [LIMIT]
set -euo pipefail
cd "$(dirname "$0")/../../.."
py=${PY:-.venv/bin/python}
CK=$1; NAME=$2; LRS=${3:-"0.02 0.05 0.1"}; LIMIT=${4:-256}
here=docs/research/positional-encoder
out=outputs/encoder/evaluate/$NAME
ev() {  # tag, args...
  local tag=$1; shift
  { echo "# python -m encoder.evaluate --checkpoint $CK $* ${EXTRA:-} name=$NAME-$tag"
    $py -m encoder.evaluate --checkpoint "$CK" "$@" ${EXTRA:-} name=$NAME-$tag out=$out-$tag 2>&1 \
      | grep -v -i "warn\|Loading weights\|return _dataset"; } > $here/eval-$NAME-$tag.txt
  tail -n 1 $here/eval-$NAME-$tag.txt | $py scripts/tag_json.py encoder=$NAME set=$tag \
    >> $here/evaluations.jsonl
}
if [ -z "${CURVES_ONLY:-}" ]; then
ev heldout --corpus outputs/corpus/encoder
ev stream texts=stream "stream_kinds=[prose,tokens,words]" limit=$LIMIT
if $py -c "import sys; from encoder import checkpoint as c; \
m = c.read('$CK')['config']['model']; \
sys.exit(0 if m.get('pooling') != 'positional' or m.get('positions', 0) >= 20 else 1)" 2>/dev/null; then
  ev sentences texts=file --texts-file configs/eval/sentences.txt
fi
fi
for lr in $LRS; do
  ev curve-lr$lr texts=stream "stream_kinds=[prose]" limit=64 curve=true curve_texts=64 \
     refine_lr=$lr
done
