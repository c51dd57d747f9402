#!/usr/bin/env bash
# Each variant of variants.sh (trained at N = 8) scored on every held-out corpus text, N = 8 and
# N = 16 (a length it was not trained on), beside the baselines; the shipped default encoder
# (trained at N = 8 and 16) on the same texts. One JSON line each to variants-eval.jsonl and
# each table to variants-eval.md (2-core CPU, ~1 min each).
#   bash docs/research/encoder/variants_eval.sh
set -euo pipefail
cd "$(dirname "$0")/../../.."
OUT=outputs/encoder/variants
: > $OUT/variants-eval.jsonl; : > $OUT/variants-eval.md
for ck in $OUT/*/ outputs/encoder/default/; do
  name=$(basename $ck)
  .venv/bin/python -m encoder.evaluate --checkpoint $ck "lengths=[8,16]" mlflow=false \
      out=$OUT/eval-$name 2>/dev/null > $OUT/eval-$name.txt
  { echo "## $name"; head -n -1 $OUT/eval-$name.txt; } >> $OUT/variants-eval.md
  tail -1 $OUT/eval-$name.txt | .venv/bin/python scripts/tag_json.py variant=$name \
      >> $OUT/variants-eval.jsonl
done
