"""Write the start learned on the H100 (gpu/big5.pt, the end of five large-batch Reptile stages from
the stage-4 start ../gpu-stages/start-stage4.pt) as the shipped start for SmolLM2-135M, with its
provenance, the inner-fit history of every stage and a plot.

  .venv/bin/python docs/research/learned-starts/large-batch-stages/ship_start.py
big5 is the run's last stage, not the stage that scored best on the evaluation texts (big3, by
1.5 steps of pooled median on the GPU): choosing on the texts that are then reported would flatter
the reported numbers. The GPU's fp32 weights hash is checked against this machine's
(../ship_start_lib.py).
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
# stages 1-4 = the stage-4 start (its history and provenance as written with it)
history = json.loads((here / "stages1-4-history.json").read_text())
old_cfg = torch.load("docs/research/learned-starts/gpu-stages/start-stage4.pt", map_location="cpu",
                     weights_only=True)["config"]
names = ("big1", "big2", "big3", "big4", "big5")
for name in names:
    add_history(history, name, metas[name]["history"])
stages = name_inits(list(old_cfg["stages"]) + [stage_record(metas[n]) for n in names])
s = torch.load(here / "big5.pt", map_location="cpu", weights_only=True)
write_start(
    Path("proto/starts"), s["e"], s["m"], lm,
    {**old_cfg, "model_state_sha256": state, "stages": stages}, history,
    "# Provenance of smollm2-135m.pt: nine Reptile stages, each a linear eps decay from its eps to\n"
    "# 0. Stage 1 was learned on a 2-core CPU; stages 2-4 (16 + 16 texts an iteration) and 5-9\n"
    "# (128 + 128 texts an iteration) ran on an H100 in fp32 on the same weights. Reproduce the\n"
    "# method with proto.meta: docs/research/learned-starts/README.md.\n",
    "Reptile stages: K=25 | K=50 x3 (32 texts/it) | K=50 x5 (256 texts/it)")
