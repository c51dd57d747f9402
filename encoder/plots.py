"""Plots of encoder training: held-out accuracy against steps, with the baselines as lines."""
from __future__ import annotations

from pathlib import Path

from proto.report import save_figure

BASELINES = ("optimised", "knn", "mean", "start", "random")


def learning_curve(history: dict, path: str | Path, title: str = "") -> Path:
    import matplotlib  # lazy: matplotlib (~1 s) is needed only to draw plots
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: matplotlib (~1 s) is needed only to draw plots

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    tr = history.get("train", [])
    if tr:
        ax1.plot([r["step"] for r in tr], [r["loss"] for r in tr], lw=1, label="train loss")
        ax1.set_xlabel("step")
        ax1.set_ylabel("loss")
        ax1.legend()
    ev = history.get("eval", [])
    if ev:
        steps = [r["step"] for r in ev]
        ax2.plot(steps, [r["eval/one_pass_acc"] for r in ev], "o-", label="encoder")
        last = ev[-1]
        for i, b in enumerate(BASELINES):
            v = last.get(f"eval/{b}_acc")
            if v is not None:
                ax2.axhline(v, ls="--", lw=1, color=f"C{i + 1}", label=f"{b} {v:.3f}")
        ax2.set_xlabel("step")
        ax2.set_ylabel("held-out one-pass token accuracy")
        ax2.set_ylim(0, 1.02)
        ax2.legend(fontsize=8)
    fig.suptitle(title or "encoder training")
    fig.tight_layout()
    path = Path(path)
    save_figure(fig, path)
    plt.close(fig)
    return path


def compare_curves(histories: dict[str, dict], path: str | Path, key: str = "loss") -> Path:
    """Train curves of several runs on one axis (e.g. 1 rank vs 2 ranks, or a resumed run)."""
    import matplotlib  # lazy: matplotlib (~1 s) is needed only to draw plots
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: matplotlib (~1 s) is needed only to draw plots

    fig, ax = plt.subplots(figsize=(6, 4))
    for i, (label, h) in enumerate(histories.items()):
        tr = h.get("train", [])
        ax.plot([r["step"] for r in tr], [r[key] for r in tr], lw=1.5 - 0.4 * i,
                ls="-" if i == 0 else "--", label=label)
    ax.set_xlabel("step")
    ax.set_ylabel(f"train {key}")
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    save_figure(fig, path)
    plt.close(fig)
    return path
