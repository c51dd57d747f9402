#!/usr/bin/env bash
# One encoder on every held-out set the README reports, as a user runs it (chunk=auto, the
# default, unless a row says chunk=0): JSON lines (set, K, accuracy, exact) appended to
# compare_sets.jsonl beside this file, tagged with NAME. ~7 min an encoder on one core.
#   bash docs/research/positional-encoder/compare_sets.sh default pos20grow
#   bash docs/research/positional-encoder/compare_sets.sh outputs/encoder/positional-chunk6 chunk6
set -euo pipefail
cd "$(dirname "$0")/../../.."
ckpt=$1 name=$2
here=docs/research/positional-encoder
out=outputs/compare/$name
py=${PY:-.venv/bin/python}
export OMP_NUM_THREADS=1
mkdir -p "$out"
head -n 32 configs/eval/sentences.txt > "$out/s32.txt"
tag() { $py scripts/tag_json.py "encoder=$name" "$@" >> $here/compare_sets.jsonl; }
encode() {  # set, texts file, K[, chunk]
  $py -m encoder.encode --checkpoint "$ckpt" --texts-file "$2" refine_steps="$3" \
      chunk="${4:-auto}" --out "$out/$1-k$3.safetensors" mlflow=false 2>/dev/null |
      tail -n 1 | tag "set=$1" "K=$3"
}
encode sentences64 configs/eval/sentences.txt 0
encode sentences32 "$out/s32.txt" 0
encode sentences32 "$out/s32.txt" 10
encode paragraphs configs/eval/paragraphs.txt 0
encode paragraphs configs/eval/paragraphs.txt 20
encode demo configs/demo_texts.txt 0
encode demo configs/demo_texts.txt 10
encode sentences32-whole "$out/s32.txt" 0 0
encode demo-whole configs/demo_texts.txt 0 0
stream() {  # set, lengths, chunk
  $py -m encoder.evaluate --checkpoint "$ckpt" texts=stream "lengths=$2" limit=256 chunk=$3 \
      mlflow=false out=$out/eval-$1 2>/dev/null > /dev/null
  # the encoder's accuracy / exact overall and per source (prose windows, random tokens)
  $py -c "import json, sys; m = json.load(open(sys.argv[1]))['methods']['encoder']
print(json.dumps({k: [round(v['acc'], 4), round(v['exact'], 4), v['texts']] for k, v in m.items()}))" \
      "$out/eval-$1/results.json" | tag "set=$1" K=0
}
stream stream-n8 "[8]" auto
stream stream-n16-20-whole "[16,20]" 0
