#!/usr/bin/env bash
# `make demo`: fit proto-tokens for a few texts with the default model (smollm2-135m) in one
# batch, decode each back in ONE forward pass, and point at the MLflow UI.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
mkdir -p outputs/demo
echo "== fitting the texts of configs/demo_texts.txt (one batch, default recipe) =="
$PY -m proto.fit --texts-file configs/demo_texts.txt --out outputs/demo/solutions.safetensors
echo "== one-pass decoding of outputs/demo/solutions.safetensors =="
$PY -m proto.decode outputs/demo/solutions.safetensors
echo
echo "Runs are in MLflow (experiment 'proto'). Open the UI with:"
echo "  .venv/bin/mlflow ui --backend-store-uri sqlite:///mlflow.db --port 5000"
