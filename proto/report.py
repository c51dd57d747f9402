"""How every command writes what it found: files in its `out` directory, each written atomically
(config.yaml, results.json, table.md, PNG plots), the same results, table and plots logged to
its MLflow run, and markdown tables.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Callable

from . import config as C
from .io import atomic_write_bytes, atomic_write_json


def md_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def save_figure(fig, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    atomic_write_bytes(path, buf.getvalue())


def write_outputs(out: Path, cfg, rep: dict, mr, plots: dict[str, Callable[[dict], Any]],
                  table: str | None = None) -> None:
    """A command's outputs, each written atomically into `out`: config.yaml, results.json,
    table.md (when given) and one PNG per plots[name](rep); results, table and plots also go
    to the MLflow run `mr`."""
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / "config.yaml", C.dump_yaml(cfg).encode())
    atomic_write_json(out / "results.json", rep)
    mr.artifact(out / "results.json")
    if table is not None:
        atomic_write_bytes(out / "table.md", (table + "\n").encode())
        mr.artifact(out / "table.md")
    import matplotlib  # lazy: matplotlib (~1 s) is needed only to draw plots
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: matplotlib (~1 s) is needed only to draw plots
    for fname, plot in plots.items():
        fig = plot(rep)
        save_figure(fig, out / fname)
        mr.figure(fig, fname)
        plt.close(fig)
