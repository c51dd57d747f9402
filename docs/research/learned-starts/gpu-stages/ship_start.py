"""Write the start learned on the H100 after stage 4 (gpu/r50c.pt) as a start file for SmolLM2-135M,
with its provenance, the inner-fit history of every stage and a plot.

  .venv/bin/python docs/research/learned-starts/gpu-stages/ship_start.py [OUTDIR]
Writes to OUTDIR (default docs/research/learned-starts/gpu-stages/shipped/); the shipped start in
proto/starts/ is stage 9, written by ../large-batch-stages/ship_start.py. The e and m written equal
those of the kept copy start-stage4.pt. The GPU's fp32 weights hash is checked against this
machine's before anything is written (../ship_start_lib.py).
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
# stage 1 = the start learned on this CPU (K = 25, ../reptile-probe/start-stage1.pt); its history
# as recorded when it was written (git c9a75ae)
history = []
add_history(history, "cpu-k25", json.loads((here / "stage1-history.json").read_text()))
for name in ("r50", "r50b", "r50c"):
    add_history(history, name, metas[name]["history"])
stages = name_inits(
    [{"name": "cpu-k25", "init": "origin", "iters": 16, "per_source": 4, "inner_steps": 25,
      "eps": 1.0, "text_seed": 1000,
      "command": "python -m proto.meta --config configs/proto/meta.yaml"}]
    + [stage_record(metas[n]) for n in ("r50", "r50b", "r50c")])
s = torch.load(here / "r50c.pt", map_location="cpu", weights_only=True)
cfg = {"learned_with": "docs/research/learned-starts/gpu-stages/gpu_probe.py (proto.meta.learn_start) on an H100, fp32",
       "model_state_sha256": state, "recipe": "default_v1", "recipe_overrides": {"lr": 0.2},
       "n_tokens": 32, "sources": ["britannica", "random-words"], "stages": stages}
write_start(
    Path(sys.argv[1] if len(sys.argv) > 1 else "docs/research/learned-starts/gpu-stages/shipped"), s["e"], s["m"], lm,
    cfg, history,
    "# Provenance of smollm2-135m.pt: four Reptile stages, each a linear eps decay from 1 to 0;\n"
    "# stage 1 was learned on a 2-core CPU, stages 2-4 ran on an H100 in fp32 on the same weights.\n"
    "# Reproduce the method with proto.meta: docs/research/learned-starts/README.md.\n",
    "Reptile stages: K=25 | K=50 x3 (dashed: stage starts)")
