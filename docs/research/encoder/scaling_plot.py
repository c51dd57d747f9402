"""Scaling curves of encoder runs: held-out and training one-pass accuracy against steps.

  python docs/research/encoder/scaling_plot.py outputs/encoder/scaling/pool32 \
      outputs/encoder/scaling/pool256 outputs/encoder/scaling/pool2048 \
      --out docs/research/encoder/scaling.png

Each run directory holds the trainer's history.json and config.yaml; a run is labelled by its
raw pool (training windows per source). Held-out accuracy is log-log against steps; training
accuracy is a 10-step moving average. The figure is also logged to MLflow (experiment
`encoder`, run `scaling`) and a JSON line per run is printed.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))


def load(run: Path) -> dict:
    h = json.loads((run / "history.json").read_text())
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    return {"run": str(run), "raw_pool": cfg["data"]["raw_pool"], "train": h["train"],
            "eval": h["eval"]}


def smooth(xs: list[float], k: int = 10) -> list[float]:
    return [sum(xs[max(0, i - k + 1): i + 1]) / len(xs[max(0, i - k + 1): i + 1])
            for i in range(len(xs))]


def figure(runs: list[dict]):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    for r in runs:
        label = f"{r['raw_pool']} windows/source"
        ev = [(x["step"], x["eval/one_pass_acc"]) for x in r["eval"]]
        a1.plot(*zip(*ev), "o-", label=label)
        a2.plot([x["step"] for x in r["train"]], smooth([x["acc"] for x in r["train"]]),
                label=label)
    knn = runs[-1]["eval"][-1].get("eval/knn_acc")
    if knn:
        a1.axhline(knn, color="gray", ls=":", label="kNN baseline")
    a1.set_xscale("log")
    a1.set_yscale("log")
    a1.set_xlabel("step")
    a1.set_ylabel("held-out one-pass accuracy")
    a1.legend(fontsize=8)
    a2.set_xlabel("step")
    a2.set_ylabel("training-batch accuracy (10-step mean)")
    a2.legend(fontsize=8)
    fig.suptitle("MiniLM encoder, decode loss on raw text, N=8: accuracy against steps per "
                 "training-pool size", fontsize=10)
    fig.tight_layout()
    return fig


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--out", default="docs/research/encoder/scaling.png")
    a = ap.parse_args(argv)
    try:
        runs = sorted((load(Path(r)) for r in a.runs), key=lambda r: r["raw_pool"])
    except (OSError, KeyError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    fig = figure(runs)
    fig.savefig(a.out, dpi=110)
    from proto.tracking import run as mlflow_run
    with mlflow_run("encoder", run_name="scaling") as mr:
        mr.figure(fig, "scaling.png")
    for r in runs:
        last = r["eval"][-1]
        tr = [x["acc"] for x in r["train"][-10:]]
        print(json.dumps({"raw_pool": r["raw_pool"], "step": last["step"],
                          "heldout_acc": round(last["eval/one_pass_acc"], 4),
                          "train_acc_last10": round(sum(tr) / len(tr), 4),
                          "heldout_by_step": {x["step"]: round(x["eval/one_pass_acc"], 4)
                                              for x in r["eval"]}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
