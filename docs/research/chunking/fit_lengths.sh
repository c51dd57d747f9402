#!/usr/bin/env bash
# One e per text against chunks of 6 (from e0 and from the shipped encoder's e) at N = 32, 64
# and 128 tokens, with proto.fit on the same held-out texts per N (windows of
# configs/eval/paragraphs.txt: n_token_texts.py): the paper's single-vector capacity beside
# many-vector speed. One e per text is capped (max_steps 400 / 300 / 200: about 5 min of one
# core each); its accuracy at the cap is the bound this CPU gives. One log per run in
# fit_lengths/, its first line the command, its last the summary JSON. ~20 min.
#   bash docs/research/chunking/fit_lengths.sh
set -euo pipefail
cd "$(dirname "$0")/../../.."
here=docs/research/chunking/fit_lengths
mkdir -p "$here" outputs/chunking
export OMP_NUM_THREADS=1
run() {   # name, args...
  local name=$1; shift
  local cmd="python -m proto.fit $* --out outputs/chunking/fit-$name.safetensors mlflow=false"
  echo "# $cmd" > "$here/$name.log"
  .venv/bin/$cmd 2>/dev/null | tail -1 >> "$here/$name.log"
}
for spec in 32:4:400 64:2:300 128:2:200; do
  IFS=: read -r n count cap <<< "$spec"
  f=outputs/chunking/n$n.txt
  .venv/bin/python docs/research/chunking/n_token_texts.py "$n" "$count" "$f" 2>/dev/null
  run "n$n-c6-e0" --texts-file $f --chunk 6 max_steps=600
  run "n$n-c6-encoder" --texts-file $f --chunk 6 --init-from default max_steps=600
  run "n$n-whole" --texts-file $f max_steps=$cap
done
