#!/usr/bin/env bash
# The refinement curve from the shipped encoder's e (`refine`, lr 1.0) beside e0 (the corpus
# recipe), K = 0-20: 64 held-out prose windows of 8 tokens (one e each) and the first 32
# held-out sentences as chunks of 6 (chunk=auto). ~5 min on one core; log in curves.log.
#   bash docs/research/encoder-starts/curves/curves.sh
set -euo pipefail
cd "$(dirname "$0")/../../../.."
export OMP_NUM_THREADS=1
py=${PY:-.venv/bin/python}
head -n 32 configs/eval/sentences.txt > outputs/chunking-sentences32.txt
$py -m encoder.evaluate --checkpoint default texts=stream "stream_kinds=[prose]" "lengths=[8]" \
    limit=64 curve=true curve_texts=64 "curve_steps=[0,1,2,5,10,20]" \
    out=outputs/eval/curve-n8 name=curve-n8-lr1
$py -m encoder.evaluate --checkpoint default texts=file \
    --texts-file outputs/chunking-sentences32.txt chunk=auto curve=true curve_texts=32 \
    "curve_steps=[0,1,2,5,10,20]" out=outputs/eval/curve-c6 name=curve-c6-lr1
