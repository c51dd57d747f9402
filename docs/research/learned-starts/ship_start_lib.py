"""Shared steps of gpu-stages/ship_start.py and large-batch-stages/ship_start.py: check that the GPU
learned the start on this machine's weights, read the probe's Reptile records, name each stage's
init by the stage it started from, and write the start file with provenance, history and a plot.

Not run on its own; the two scripts put this folder on sys.path.
"""
import json
from pathlib import Path

import yaml

from proto.meta import plot
from proto.models import state_sha256, load_model
from proto.start import save_start

# The probe printed the model's fp32 state sha256 on the GPU (the gguf loaded with transformers).
GPU_STATE = "3c5fdee91060c09a103a3ace048e09657659253dda455eaa5b13bcd2d5525f3b"


def load_checked_model():
    lm = load_model("smollm2-135m", dtype="float32", verbose=False)
    state = state_sha256(lm.model)
    assert state == GPU_STATE, f"weights differ from the GPU's: {state}"
    return lm, state


def read_metas(gpu_dir: Path) -> dict:
    """The probe's `meta` job records by stage name, from every results-*.jsonl in gpu_dir."""
    metas = {}
    for f in sorted(gpu_dir.glob("results-*.jsonl")):
        for line in f.read_text().splitlines():
            r = json.loads(line)
            if r.get("job") == "meta":
                metas[r["name"]] = r
    return metas


def stage_record(meta: dict) -> dict:
    return {k: v for k, v in meta.items() if k not in ("history", "job")}


def name_inits(stages: list) -> list:
    """The probe records where a stage started as it found it on the GPU machine: `shipped` (the
    start in proto/starts/ on that machine, i.e. the previous stage) or `file:.carry/<dir>/<stage>.pt`
    (an ignored carry folder). In a clone neither means anything, so each becomes the name of the
    stage it continued."""
    out = []
    for i, st in enumerate(stages):
        st = dict(st)
        init = st.get("init", "origin")
        if init == "shipped":
            assert i > 0, "a first stage that went on from 'shipped' has no stage to name"
            st["init"] = stages[i - 1]["name"]
        elif init.startswith("file:"):
            st["init"] = Path(init[len("file:"):]).stem
        out.append(st)
    return out


def add_history(history: list, stage: str, hist: list) -> None:
    for h in hist:
        history.append({**h, "stage": stage, "iter": len(history)})


def write_start(dest: Path, e, m, lm, cfg: dict, history: list, header: str, title: str) -> Path:
    """smollm2-135m.{pt,config.yaml,history.json,png} in dest; the plot marks stage boundaries,
    where the inner horizon or batch changes and the curve jumps."""
    dest.mkdir(parents=True, exist_ok=True)
    out = dest / "smollm2-135m.pt"
    save_start(out, e, m, lm, "e_m", "sink", cfg)
    (dest / "smollm2-135m.config.yaml").write_text(header + yaml.safe_dump(cfg, sort_keys=False))
    (dest / "smollm2-135m.history.json").write_text(json.dumps(history, indent=1))
    fig = plot(history, dest / "smollm2-135m.png")
    bounds = [h["iter"] for a, h in zip(history, history[1:]) if h["stage"] != a["stage"]]
    for ax in fig.axes:
        for x in bounds:
            ax.axvline(x - 0.5, color="grey", lw=0.8, ls="--")
    fig.axes[0].set_title(title, fontsize=9)
    fig.savefig(dest / "smollm2-135m.png", dpi=110)
    print("wrote", out, "|e0|", float(e.norm()), "|m0|", float(m.norm()), len(history),
          "iterations")
    return out
