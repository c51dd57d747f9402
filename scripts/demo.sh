#!/usr/bin/env bash
# `make demo`: the whole pipeline on the default model (smollm2-135m), small enough for a CPU:
# a corpus (data_gen.build), its locality study (eval.locality), two encoders trained briefly
# (decode vs regress loss) with their held-out evaluation beside the baselines, one text
# encoded by the shipped encoder and decoded back in one pass, a summary table, and the command
# that opens the MLflow UI. Every step reuses what an earlier run already built.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
mkdir -p outputs/demo
T0=$(date +%s)
echo "== 1/5 corpus: python -m data_gen.build --config configs/data_gen/demo.yaml =="
$PY -m data_gen.build --config configs/data_gen/demo.yaml | tail -1 > outputs/demo/corpus.json
echo "== 2/5 locality: python -m eval.locality --corpus outputs/demo/corpus =="
$PY -m eval.locality --corpus outputs/demo/corpus out=outputs/demo/locality | tail -1 \
    > outputs/demo/locality.json
for loss in decode regress; do
  echo "== 3/5 encoder ($loss loss): python -m encoder.train --config configs/encoder/demo.yaml =="
  $PY -m encoder.train --config configs/encoder/demo.yaml out=outputs/demo/enc-$loss \
      loss.kind=$loss | tail -1 > outputs/demo/enc-$loss.json
done
echo "== 4/5 encode + one-pass decode: python -m encoder.encode --checkpoint default =="
$PY -m encoder.encode --checkpoint default --texts-file configs/demo_texts.txt \
    --out outputs/demo/encoded.safetensors | tail -1 > outputs/demo/encode.json
$PY -m proto.decode outputs/demo/encoded.safetensors | head -n -1
echo "== 5/5 summary =="
$PY scripts/demo_summary.py outputs/demo $(( $(date +%s) - T0 ))
echo
echo "Runs are in MLflow (experiments data_gen, eval, encoder). Open the UI with:"
echo "  .venv/bin/mlflow ui --backend-store-uri sqlite:///mlflow.db --port 5000"
