"""Session 13: write the start learned on the H100 (docs/research/s13/gpu/r50c.pt) as the shipped
start for SmolLM2-135M, with its provenance, the inner-fit history of every stage and a plot.

  .venv/bin/python docs/research/s13/ship_start.py [OUTDIR]
Session 14 shipped a newer start (docs/research/s14/ship_start.py), so this now writes to OUTDIR
(default docs/research/s13/shipped/), not over proto/starts/; its .pt equals the kept copy
docs/research/s13/start-s13.pt.
The probe printed the model's fp32 state sha256 on the GPU (3c5fdee9..., the gguf loaded with
transformers 5.17); it is checked here against this machine's before the file is written.
"""
import json
import sys
from pathlib import Path

import torch

from proto.meta import plot
from proto.models import _sha256_state, load_model
from proto.start import save_start

GPU_STATE = "3c5fdee91060c09a103a3ace048e09657659253dda455eaa5b13bcd2d5525f3b"
here = Path(__file__).parent / "gpu"
lm = load_model("smollm2-135m", dtype="float32", verbose=False)
state = _sha256_state(lm.model)
assert state == GPU_STATE, f"weights differ from the GPU's: {state}"
metas = {}
for f in sorted(here.glob("results-*.jsonl")):
    for line in f.read_text().splitlines():
        r = json.loads(line)
        if r["job"] == "meta":
            metas[r["name"]] = r
# stage 1 = session 12's shipped start; its history as shipped then (git c9a75ae)
old = json.loads((here / "s12-start-history.json").read_text())
history, stages = [], []
for name, hist in [("shipped-s12", old)] + [(n, metas[n]["history"]) for n in ("r50", "r50b", "r50c")]:
    for h in hist:
        history.append({**h, "stage": name, "iter": len(history)})
    if name in metas:
        j = {k: v for k, v in metas[name].items() if k not in ("history", "job")}
        stages.append(j)
s = torch.load(here / "r50c.pt", map_location="cpu", weights_only=True)
cfg = {"learned_with": "docs/research/s13/gpu_probe.py (proto.meta.learn_start) on an H100, fp32",
       "model_state_sha256": state, "recipe": "default_v1", "recipe_overrides": {"lr": 0.2},
       "n_tokens": 32, "sources": ["britannica", "random-words"],
       "stages": [{"name": "shipped-s12", "init": "origin", "iters": 16, "per_source": 4,
                   "inner_steps": 25, "eps": 1.0, "text_seed": 1000,
                   "command": "python -m proto.meta --config configs/proto/meta.yaml"}] + stages}
dest = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/research/s13/shipped")
dest.mkdir(parents=True, exist_ok=True)
out = dest / "smollm2-135m.pt"
save_start(out, s["e"], s["m"], lm, "e_m", "sink", cfg)
(dest / "smollm2-135m.config.yaml").write_text(
    "# Provenance of smollm2-135m.pt (session 13): four Reptile stages, each a linear eps decay\n"
    "# from 1 to 0; stage 1 is session 12's start, stages 2-4 ran on an H100 in fp32 on the same\n"
    "# weights. Reproduce the method with proto.meta: README 'A learned start'.\n"
    + __import__("yaml").safe_dump(cfg, sort_keys=False))
(dest / "smollm2-135m.history.json").write_text(json.dumps(history, indent=1))
fig = plot(history, dest / "smollm2-135m.png")
# The inner horizon changes between stages (25 -> 50 steps), so the curve jumps there: mark them.
bounds = [h["iter"] for a, h in zip(history, history[1:]) if h["stage"] != a["stage"]]
for ax in fig.axes:
    for x in bounds:
        ax.axvline(x - 0.5, color="grey", lw=0.8, ls="--")
fig.axes[0].set_title("Reptile stages: K=25 | K=50 x3 (dashed: stage starts)", fontsize=9)
fig.savefig(dest / "smollm2-135m.png", dpi=110)
print("wrote", out, "|e0|", float(s["e"].norm()), "|m0|", float(s["m"].norm()), len(history), "iterations")
