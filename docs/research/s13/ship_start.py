"""Session 13: write the start learned on the H100 (docs/research/s13/gpu/r50c.pt) as the shipped
start for SmolLM2-135M, with its provenance, the inner-fit history of every stage and a plot.

  .venv/bin/python docs/research/s13/ship_start.py [OUTDIR]
Session 14 shipped a newer start (docs/research/s14/ship_start.py), so this now writes to OUTDIR
(default docs/research/s13/shipped/), not over proto/starts/; its .pt equals the kept copy
docs/research/s13/start-s13.pt. The GPU's fp32 weights hash is checked against this machine's
before anything is written (docs/research/ship_start_lib.py).
"""
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ship_start_lib import add_history, load_checked_model, name_inits, read_metas, stage_record, write_start  # noqa: E402

here = Path(__file__).parent / "gpu"
lm, state = load_checked_model()
metas = read_metas(here)
# stage 1 = session 12's shipped start; its history as shipped then (git c9a75ae)
history = []
add_history(history, "shipped-s12", json.loads((here / "s12-start-history.json").read_text()))
for name in ("r50", "r50b", "r50c"):
    add_history(history, name, metas[name]["history"])
stages = name_inits(
    [{"name": "shipped-s12", "init": "origin", "iters": 16, "per_source": 4, "inner_steps": 25,
      "eps": 1.0, "text_seed": 1000,
      "command": "python -m proto.meta --config configs/proto/meta.yaml"}]
    + [stage_record(metas[n]) for n in ("r50", "r50b", "r50c")])
s = torch.load(here / "r50c.pt", map_location="cpu", weights_only=True)
cfg = {"learned_with": "docs/research/s13/gpu_probe.py (proto.meta.learn_start) on an H100, fp32",
       "model_state_sha256": state, "recipe": "default_v1", "recipe_overrides": {"lr": 0.2},
       "n_tokens": 32, "sources": ["britannica", "random-words"], "stages": stages}
write_start(
    Path(sys.argv[1] if len(sys.argv) > 1 else "docs/research/s13/shipped"), s["e"], s["m"], lm,
    cfg, history,
    "# Provenance of smollm2-135m.pt (session 13): four Reptile stages, each a linear eps decay\n"
    "# from 1 to 0; stage 1 is session 12's start, stages 2-4 ran on an H100 in fp32 on the same\n"
    "# weights. Reproduce the method with proto.meta: README 'A learned start'.\n",
    "Reptile stages: K=25 | K=50 x3 (dashed: stage starts)")
