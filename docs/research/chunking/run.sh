#!/usr/bin/env bash
# The chunking table: the shipped default encoder on the first 32 held-out sentences of
# configs/eval/sentences.txt, whole text (chunk=0) and chunks of 8, 6, 4 tokens, with 0 and 10
# refinement steps. One log per run in logs/; the table reads each log's last (JSON) line.
#   bash docs/research/chunking/run.sh
set -euo pipefail
cd "$(dirname "$0")/../../.."
here=docs/research/chunking
head -n 32 configs/eval/sentences.txt > outputs/chunking-sentences32.txt
for k in 0 10; do
  for c in 0 8 6 4; do
    log=$here/logs/chunk$c-refine$k.log
    echo "# python -m encoder.encode --checkpoint default --texts-file outputs/chunking-sentences32.txt chunk=$c refine_steps=$k --out outputs/chunking/c$c-k$k.safetensors mlflow=false" > "$log"
    nice -n 5 .venv/bin/python -m encoder.encode --checkpoint default \
      --texts-file outputs/chunking-sentences32.txt chunk=$c refine_steps=$k \
      --out outputs/chunking/c$c-k$k.safetensors mlflow=false >> "$log" 2>&1
  done
done
