#!/usr/bin/env bash
# Does the encoder make corpus building faster? The same 64 texts (48 Britannica + 16 random
# words, N = 8; configs/data_gen/encoder.yaml's recipe: m frozen at m0) built three times, one
# after the other: from the learned start (the encoder corpus's recipe), the same with tail
# restarts, and from the shipped encoder's e (init_from=default, refinement noise). Each
# build's last JSON line (solved texts, seconds, texts/h) goes to corpus_speedup.jsonl.
#   bash docs/research/encoder/corpus_speedup.sh        # ~10 min on a 2-core CPU
set -euo pipefail
cd "$(dirname "$0")/../../.."
py=${PY:-.venv/bin/python}
log=docs/research/encoder/corpus_speedup.jsonl
: > $log
build() {  # name, overrides...
  local name=$1; shift
  rm -rf outputs/corpus/speedup-$name
  $py -m data_gen.build --config configs/data_gen/encoder.yaml out=outputs/corpus/speedup-$name \
      "sources=[{name: britannica, count: 48, lengths: [8]}, {name: random-words, count: 16, lengths: [8]}]" \
      chunk_size=32 batch_size=32 pairs_per_chunk=0 restarts=1 "$@" | tail -n 1 \
    | $py scripts/tag_json.py arm=$name >> $log
  tail -n 1 $log >&2
}
build start
build start-tail tail_restarts=2
build encoder init_from=default
