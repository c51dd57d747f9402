"""Scaling curves of encoder runs: held-out and training one-pass accuracy against steps.

  python docs/research/encoder/scaling_plot.py 32=outputs/encoder/scaling/minilm-pool32 \\
      2048=outputs/encoder/scaling/minilm-pool2048 --name scaling-data \\
      --out docs/research/encoder/scaling-data.png --title "MiniLM, windows per source"

Each run directory holds the trainer's history.json; LABEL=DIR names it in the legend. Held-out
accuracy is log-log against steps, beside the kNN baseline; training-batch accuracy is a 10-step
moving average, so the gap between the panels is how much a run memorises. The figure is also
logged to MLflow (experiment `encoder`, run NAME); one JSON line per run goes to stdout.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))


def load(label: str, run: Path) -> dict:
    h = json.loads((run / "history.json").read_text())
    if not h["eval"]:
        raise ValueError(f"{run} has no evaluation yet")
    return {"label": label, "run": str(run), "train": h["train"], "eval": h["eval"]}


def smooth(xs: list[float], k: int = 10) -> list[float]:
    return [sum(xs[max(0, i - k + 1): i + 1]) / len(xs[max(0, i - k + 1): i + 1])
            for i in range(len(xs))]


def figure(runs: list[dict], title: str):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    for r in runs:
        ev = [(x["step"], x["eval/one_pass_acc"]) for x in r["eval"]]
        a1.plot(*zip(*ev), "o-", label=r["label"])
        a2.plot([x["step"] for x in r["train"]], smooth([x["acc"] for x in r["train"]]),
                label=r["label"])
    knn = runs[-1]["eval"][-1].get("eval/knn_acc")
    if knn:
        a1.axhline(knn, color="gray", ls=":", label="kNN baseline")
    a1.set_xscale("log")
    a1.set_yscale("log")
    from matplotlib.ticker import NullFormatter, ScalarFormatter
    steps = [x["step"] for r in runs for x in r["eval"]]
    a1.set_xticks([t for t in (10, 20, 40, 80, 160, 320, 640, 1280, 2560)
                   if min(steps) <= t <= max(steps)])
    a1.xaxis.set_major_formatter(ScalarFormatter())   # plain numbers, not 2x10^1
    a1.xaxis.set_minor_formatter(NullFormatter())
    a1.yaxis.set_major_formatter(ScalarFormatter())
    a1.yaxis.set_minor_formatter(ScalarFormatter())
    a1.set_xlabel("step")
    a1.set_ylabel("held-out one-pass accuracy")
    a1.legend(fontsize=8)
    a2.set_xlabel("step")
    a2.set_ylabel("training-batch accuracy (10-step mean)")
    a2.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def summary(r: dict) -> dict:
    last = r["eval"][-1]
    tr = [x["acc"] for x in r["train"][-10:]]
    return {"run": r["label"], "dir": r["run"], "step": last["step"],
            "heldout_acc": round(last["eval/one_pass_acc"], 4),
            "train_acc_last10": round(sum(tr) / len(tr), 4),
            "knn_acc": round(last.get("eval/knn_acc", float("nan")), 4),
            "heldout_by_step": {x["step"]: round(x["eval/one_pass_acc"], 4) for x in r["eval"]}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+", help="LABEL=DIR")
    ap.add_argument("--out", required=True)
    ap.add_argument("--name", default="scaling", help="MLflow run name")
    ap.add_argument("--title", default="")
    a = ap.parse_args(argv)
    try:
        runs = []
        for spec in a.runs:
            label, _, path = spec.partition("=")
            runs.append(load(label, Path(path or label)))
    except (OSError, KeyError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    fig = figure(runs, a.title)
    fig.savefig(a.out, dpi=110)
    from proto.tracking import run as mlflow_run
    with mlflow_run("encoder", run_name=a.name) as mr:
        mr.figure(fig, Path(a.out).name)
        for r in runs:
            s = summary(r)
            mr.metrics({f"{s['run']}/heldout_acc": s["heldout_acc"],
                        f"{s['run']}/train_acc": s["train_acc_last10"]})
            print(json.dumps(s))
    return 0


if __name__ == "__main__":
    sys.exit(main())
