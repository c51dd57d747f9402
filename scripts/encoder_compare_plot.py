"""The encoders that matter side by side, from their MLflow evaluation runs: held-out one-pass
accuracy per run, and accuracy after K refinement steps from each encoder's e and from e0.
Saved as a PNG and logged to MLflow (experiment `encoder`, run `encoder-comparison`).

  python scripts/encoder_compare_plot.py --out docs/encoder-compare.png \\
      --acc lora-default-sentences pos20grow-sentences pos20grow-heldout posN8-heldout gpuN8-heldout \\
      --curves posN8-curve-lr0.3 gpuN8-curve-lr0.3 pos20grow-curve-lr0.05   # docs/encoder-compare.png

Run names are those `docs/research/positional-encoder/evaluate.sh` gives (NAME-SET); the
newest finished run of each name is used. A name with no run ends with one `error:` line.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from proto.tracking import run as mlflow_run  # noqa: E402

KS = (0, 1, 2, 5, 10, 20)


def latest_metrics(names: list[str]) -> dict[str, dict]:
    import mlflow  # lazy: only this script's data needs the client
    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name("encoder")
    out = {}
    for name in names:
        runs = client.search_runs([exp.experiment_id] if exp else [],
                                  f"attributes.run_name = '{name}' and "
                                  "attributes.status = 'FINISHED'",
                                  order_by=["attributes.start_time DESC"], max_results=1)
        if not runs:
            raise ValueError(f"no finished encoder run named {name!r}")
        out[name] = runs[0].data.metrics
    return out


def plot(acc: dict[str, dict], curves: dict[str, dict], out: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(13, 5))
    names = list(acc)
    a1.barh(names, [acc[n]["eval/one_pass_acc"] for n in names], color="tab:blue")
    a1.barh(names, [acc[n].get("eval/start_acc", 0) for n in names], color="tab:gray",
            label="e0 on the same texts")
    for i, n in enumerate(names):
        a1.text(acc[n]["eval/one_pass_acc"] + 0.01, i, f"{acc[n]['eval/one_pass_acc']:.3f}",
                va="center", fontsize=8)
    a1.set_xlabel("held-out one-pass token accuracy (eval/one_pass_acc)")
    a1.set_xlim(0, 1)
    a1.legend(fontsize=8)
    for name, m in curves.items():
        enc = [m.get(f"refine/encoder_k{k}_acc") for k in KS]
        line, = a2.plot(KS, enc, "o-", label=f"{name}: from the encoder's e")
        ex = [m.get(f"refine/encoder_k{k}_exact") for k in KS]
        a2.plot(KS, ex, ":", color=line.get_color(), alpha=0.7)
    first = next(iter(curves.values()), None)
    if first:
        a2.plot(KS, [first.get(f"refine/start_k{k}_acc") for k in KS], "s--", color="black",
                label=f"{next(iter(curves))}: from e0 (default recipe)")
    a2.set_xlabel("refinement steps K")
    a2.set_ylabel("accuracy (solid), exact match (dotted)")
    a2.set_ylim(0, 1.02)
    a2.grid(alpha=0.3)
    a2.legend(fontsize=7)
    fig.suptitle("encoders on held-out texts (MLflow runs of experiment `encoder`)", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="docs/encoder-compare.png")
    ap.add_argument("--acc", nargs="+", required=True, help="runs for the accuracy bars")
    ap.add_argument("--curves", nargs="*", default=[], help="curve=true runs")
    a = ap.parse_args(argv)
    os.environ.setdefault("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db")
    try:
        acc, curves = latest_metrics(a.acc), latest_metrics(a.curves)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out = Path(a.out)
    plot(acc, curves, out)
    with mlflow_run("encoder", None, run_name="encoder-comparison",
                    params={"acc": " ".join(a.acc), "curves": " ".join(a.curves)}) as mr:
        mr.artifact(out)
    print(json.dumps({"png": str(out), "runs": len(acc) + len(curves)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
