#!/usr/bin/env bash
# 1 rank vs 2 ranks (deepspeed launcher, gloo) at the same global batch, and a run stopped at
# step 5 then resumed, all on the default model with configs/encoder/demo.yaml's encoder at
# micro-batch 4 (2 ranks x 4 = its global batch of 8; 1 rank accumulates 2 x 4). Needs the
# demo corpus: python -m data_gen.build --config configs/data_gen/demo.yaml (~4 min here).
# Writes the three histories and ranks_resume.png beside this script.
#   bash docs/research/encoder/ranks_resume.sh
set -euo pipefail
cd "$(dirname "$0")/../../.."
OUT=outputs/encoder/ranks
rm -rf $OUT; mkdir -p $OUT
COMMON=(--config configs/encoder/demo.yaml train.micro_batch=4 train.steps=10 train.eval_every=10 train.save_every=5 mlflow=false)
.venv/bin/python -m encoder.train "${COMMON[@]}" out=$OUT/one | tail -1
.venv/bin/deepspeed --no_local_rank --num_gpus 2 --module encoder.train "${COMMON[@]}" out=$OUT/two threads=1 2>$OUT/two.stderr | tail -1
.venv/bin/python -m encoder.train "${COMMON[@]}" out=$OUT/resumed train.stop_after=5 | tail -1
.venv/bin/python -m encoder.train "${COMMON[@]}" out=$OUT/resumed | tail -1
.venv/bin/python - <<'PY'
import json
from pathlib import Path
from encoder.plots import compare_curves
root, here = Path("outputs/encoder/ranks"), Path("docs/research/encoder")
h = {k: json.loads((root / k / "history.json").read_text()) for k in ("one", "two", "resumed")}
for k, v in h.items():
    (here / f"ranks_resume-{k}.json").write_text(json.dumps(v["train"], indent=1))
    print(k, [round(r["loss"], 5) for r in v["train"]])
print("max |one - two|", max(abs(a["loss"] - b["loss"]) for a, b in zip(h["one"]["train"], h["two"]["train"])))
print("max |one - resumed|", max(abs(a["loss"] - b["loss"]) for a, b in zip(h["one"]["train"], h["resumed"]["train"])))
compare_curves({"1 rank": h["one"], "2 ranks (deepspeed launcher)": h["two"],
                "stopped at 5, resumed": h["resumed"]}, here / "ranks_resume.png")
PY
