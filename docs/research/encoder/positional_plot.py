"""Plot the positional encoder's curves: held-out one-pass accuracy against texts seen, per
run, from the results.jsonl files of the H200 probe (gpu-positional/, written by the research
script gpu_positional.py, removed after commit 1994e98) and encoder.train histories (the
GPU encoders' too: scripts/gpu_encoders.sh); saved as a PNG and logged to MLflow (experiment
`encoder`, run `positional-curves`).

  python docs/research/encoder/positional_plot.py OUT.png \\
      gpu:docs/research/encoder/gpu-positional/2026-12-04-run1.jsonl \\
      gpu:docs/research/encoder/gpu-positional/2026-12-04-run2-long.jsonl \\
      cpu:LABEL=outputs/encoder/positional-n8 \\     # an encoder.train output dir
      steps:LABEL=docs/research/encoder/scaling-steps.jsonl@16   # a scaling run, 16 texts/step

gpu: lines give prose{N}_acc (solid) and tokens{N}_acc (dashed) per run; cpu: a training
run's held-out evaluations (history.json: eval/one_pass_acc against step x global batch);
steps: the longest run of a scaling-steps.jsonl (heldout_by_step against step x batch).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from proto.tracking import run as mlflow_run  # noqa: E402


def gpu_curves(path: Path) -> dict[str, list[tuple[int, float, float]]]:
    """run -> [(texts, prose acc, tokens acc)] of one results.jsonl (sweep runs left out)."""
    out: dict[str, list] = {}
    for line in path.read_text().splitlines():
        row = json.loads(line)
        if "run" not in row or row["run"].startswith("sweep") or "texts" not in row:
            continue
        prose = next((v for k, v in row.items() if k.startswith("prose") and k.endswith("acc")),
                     None)
        toks = next((v for k, v in row.items() if k.startswith("tokens") and k.endswith("acc")),
                    None)
        out.setdefault(row["run"], []).append((row["texts"], prose, toks))
    return out


def cpu_curve(run_dir: Path) -> list[tuple[int, float]]:
    import yaml
    hist = json.loads((run_dir / "history.json").read_text())
    batch = yaml.safe_load((run_dir / "config.yaml").read_text())["train"]["global_batch"]
    return [(r["step"] * batch, r["eval/one_pass_acc"]) for r in hist["eval"]]


def steps_curve(spec: str) -> list[tuple[int, float]]:
    path, batch = spec.rsplit("@", 1)
    rows = [json.loads(x) for x in Path(path).read_text().splitlines() if x.strip()]
    best = max(rows, key=lambda r: r["step"])
    return [(int(k) * int(batch), v) for k, v in best["heldout_by_step"].items()]


def main(argv) -> int:
    out, specs = Path(argv[0]), argv[1:]
    fig, ax = plt.subplots(figsize=(8, 5))
    for spec in specs:
        kind, rest = spec.split(":", 1)
        if kind == "gpu":
            for name, pts in gpu_curves(Path(rest)).items():
                pts = [p for p in pts if p[0] > 0]
                line, = ax.plot([p[0] for p in pts], [p[1] for p in pts], label=f"{name} prose")
                ax.plot([p[0] for p in pts], [p[2] for p in pts], "--", color=line.get_color(),
                        alpha=0.6)
        else:
            label, d = rest.split("=", 1) if "=" in rest else (Path(rest).name, rest)
            pts = cpu_curve(Path(d)) if kind == "cpu" else steps_curve(d)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=f"{label} (CPU)")
    ax.set_xscale("log")
    ax.set_xlabel("training texts seen")
    ax.set_ylabel("held-out one-pass token accuracy")
    ax.set_title("positional encoder (linear code over the decoder's embeddings)\n"
                 "solid: held-out prose windows, dashed: random token sequences")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    with mlflow_run("encoder", None, run_name="positional-curves",
                    params={"inputs": " ".join(specs)[:500]}) as mr:
        mr.artifact(out)
    print(json.dumps({"png": str(out)}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
