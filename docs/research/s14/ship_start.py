"""Session 14: write the start learned on the H100 (docs/research/s14/gpu/big5.pt, the end of five
large-batch Reptile stages from session 13's start) as the shipped start for SmolLM2-135M, with its
provenance, the inner-fit history of every stage and a plot.

  .venv/bin/python docs/research/s14/ship_start.py
big5 is the run's last stage, not the stage that scored best on the evaluation texts (big3, by
1.5 steps of pooled median on the GPU): choosing on the texts that are then reported would flatter
the reported numbers. The GPU's fp32 state sha256 (3c5fdee9...) is checked against this machine's.
"""
import json
from pathlib import Path

import torch
import yaml

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
        if r.get("job") == "meta":
            metas[r["name"]] = r
# stages 1-4 = session 13's shipped start (its history and provenance as shipped then, git e2a3cb9)
old_hist = json.loads((here / "s13-start-history.json").read_text())
old_cfg = torch.load("docs/research/s13/start-s13.pt", map_location="cpu",
                     weights_only=True)["config"]
history = list(old_hist)
stages = list(old_cfg["stages"])
for name in ("big1", "big2", "big3", "big4", "big5"):
    for h in metas[name]["history"]:
        history.append({**h, "stage": name, "iter": len(history)})
    stages.append({k: v for k, v in metas[name].items() if k not in ("history", "job")})
s = torch.load(here / "big5.pt", map_location="cpu", weights_only=True)
cfg = {**old_cfg, "learned_with": old_cfg["learned_with"], "model_state_sha256": state,
       "stages": stages}
out = Path("proto/starts/smollm2-135m.pt")
save_start(out, s["e"], s["m"], lm, "e_m", "sink", cfg)
Path("proto/starts/smollm2-135m.config.yaml").write_text(
    "# Provenance of smollm2-135m.pt (session 14): nine Reptile stages, each a linear eps decay\n"
    "# from its eps to 0. Stage 1 is session 12's start (this CPU); stages 2-4 (session 13, 16 + 16\n"
    "# texts an iteration) and 5-9 (session 14, 128 + 128 texts an iteration) ran on an H100 in\n"
    "# fp32 on the same weights. Reproduce the method with proto.meta: README 'A learned start'.\n"
    + yaml.safe_dump(cfg, sort_keys=False))
Path("proto/starts/smollm2-135m.history.json").write_text(json.dumps(history, indent=1))
fig = plot(history, Path("proto/starts/smollm2-135m.png"))
bounds = [h["iter"] for a, h in zip(history, history[1:]) if h["stage"] != a["stage"]]
for ax in fig.axes:
    for x in bounds:
        ax.axvline(x - 0.5, color="grey", lw=0.8, ls="--")
fig.axes[0].set_title("Reptile stages: K=25 | K=50 x3 (32 texts/it) | K=50 x5 (256 texts/it)",
                      fontsize=9)
fig.savefig("proto/starts/smollm2-135m.png", dpi=110)
print("wrote", out, "|e0|", float(s["e"].norm()), "|m0|", float(s["m"].norm()), len(history),
      "iterations")
