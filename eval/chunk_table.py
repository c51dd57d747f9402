"""The chunk trade-off table: tokens per e (C) x refinement steps (K), from the encoder and e0.

  python -m eval.chunk_table                         # shipped default, 32 sentences + 9 paragraphs
  python -m eval.chunk_table "chunks=[4,8]" "ks=[0,5,10]" sentences=8 paragraphs=2   # minutes
  python -m encoder.train --config configs/encoder/tiny-positional.yaml && \\
  python -m eval.chunk_table checkpoint=outputs/encoder/tiny-positional "chunks=[2,4]" \\
      "ks=[0,2]" sentences=2 paragraphs=1 out=outputs/eval/chunk_table-tiny  # tiny CPU run

Texts: the first `sentences` lines of configs/eval/sentences.txt (held-out 15-20-token
sentences) and the first `paragraphs` of configs/eval/paragraphs.txt (50-200-token paragraphs
written for this table; no training source holds either). Each text is split into chunks of C
tokens (proto.solution.chunk_rows, the last may be shorter); every chunk of a set is one row of
one batched fit (encoder.refine.curve) from two starts:
  encoder  the checkpoint's e for the chunk (one encoder call for all chunks), then K steps of
           the `refine` recipe (constant lr, no noise; refine_lr > 0 replaces its lr);
  e0       the learned start's e0 plus the fitting recipe's noise, then K steps of `e0_recipe`
           (the corpus recipe), m frozen at the encoder's m in both.
A text's accuracy after K steps is over all its tokens; it is exact when every chunk is. Per
(set, start, C, K): token accuracy, exact texts, e's used, tokens per e; per (set, start, C)
the seconds of its whole fit to max(K) (the encoder call included) and seconds per text exact
at max(K). Writes out/{config.yaml,results.json,table.md,chunk_table.png}; one MLflow run
(experiment `eval`) with a nested run per cell, its set, start, C and K as params.
"""
from __future__ import annotations

import dataclasses
import sys
import time

from eval import common as E
from proto import config as C


@dataclasses.dataclass
class ChunkTableConfig:
    checkpoint: str = "default"
    sentences: int = 32               # first lines of sentences_file (0 = none)
    paragraphs: int = 9               # first lines of paragraphs_file (0 = none)
    sentences_file: str = "configs/eval/sentences.txt"
    paragraphs_file: str = "configs/eval/paragraphs.txt"
    chunks: list[int] = dataclasses.field(default_factory=lambda: [4, 6, 8, 12, 16, 20])
    ks: list[int] = dataclasses.field(default_factory=lambda: [0, 2, 5, 10, 20])
    starts: list[str] = dataclasses.field(default_factory=lambda: ["encoder", "e0"])
    refine_lr: float = 0.0            # 0 = the `refine` recipe's own lr
    e0_recipe: str = "default"
    batch_size: int = 64
    threads: int = 0
    out: str = "outputs/eval/chunk_table"
    mlflow: bool = True

    def __post_init__(self):
        if not self.chunks or min(self.chunks) < 1:
            raise ValueError("chunks must be a non-empty list of lengths >= 1")
        if not self.ks or min(self.ks) < 0:
            raise ValueError("ks must be a non-empty list of step counts >= 0")
        if not self.starts or set(self.starts) - {"encoder", "e0"}:
            raise ValueError("starts must name encoder and/or e0")
        if min(self.sentences, self.paragraphs) < 0 or not self.sentences + self.paragraphs:
            raise ValueError("sentences and paragraphs must be >= 0, and not both 0")
        if self.refine_lr < 0 or self.batch_size < 1:
            raise ValueError("refine_lr must be >= 0 and batch_size >= 1")
        E.check_recipe(self.e0_recipe, {}, 0)


def text_sets(cfg: ChunkTableConfig) -> dict[str, list[str]]:
    from proto.io import read_texts
    out = {}
    for name, path, n in (("sentences", cfg.sentences_file, cfg.sentences),
                          ("paragraphs", cfg.paragraphs_file, cfg.paragraphs)):
        if n:
            texts = read_texts([], path)
            if len(texts) < n:
                raise C.ConfigError(f"{path} has {len(texts)} texts, {name}={n} asked")
            out[name] = texts[:n]
    return out


def study(cfg: ChunkTableConfig, log) -> dict:
    from encoder import checkpoint as ckpt
    from encoder.encode import chunk_length
    from encoder.models import encode_tokens
    from encoder.refine import REFINE_LR, curve, refine_recipe, text_scores
    from proto.fit import get_recipe
    from proto.solution import chunk_rows
    from proto.start import load_start

    sets = text_sets(cfg)
    enc, decoder, m, blob = ckpt.load(cfg.checkpoint)
    if m is None:
        raise C.ConfigError(f"encoder {blob['path']} has no m: refinement needs one")
    for c in cfg.chunks:
        try:
            chunk_length(c, enc, blob)
        except ValueError as exc:
            raise C.ConfigError(str(exc)) from None
    lm = decoder.lm
    toks = {s: [lm.tokenize(t) for t in texts] for s, texts in sets.items()}
    grid = {(s, c): chunk_rows(toks[s], c) for s in sets for c in cfg.chunks}
    e_enc, enc_secs = {}, {}
    for key, chunks in grid.items():
        t0 = time.time()
        e_enc[key] = encode_tokens(enc, [x["token_ids"] for x in chunks], None,
                                   batch_size=len(chunks)).cpu()
        enc_secs[key] = time.time() - t0
    enc.release()
    e0 = load_start("learned", lm, decoder.arr.name, "sink")
    m = m.detach().float().cpu()
    ks = tuple(sorted(set(cfg.ks)))
    recipes = {"encoder": refine_recipe(cfg.refine_lr or REFINE_LR, max(ks)),
               "e0": get_recipe(cfg.e0_recipe, max_steps=max(1, max(ks)))}
    cells, runs = [], []
    for (s, c), chunks in grid.items():
        units = [x["token_ids"] for x in chunks]
        for start in cfg.starts:
            t0 = time.time()
            res = curve(lm, recipes[start], units, e_enc[(s, c)] if start == "encoder" else None,
                        m, None if start == "encoder" or e0 is None else e0[0], ks,
                        cfg.batch_size)["results"]
            secs = time.time() - t0 + (enc_secs[(s, c)] if start == "encoder" else 0.0)
            run = {"set": s, "start": start, "chunk": c, "vectors": len(units),
                   "tokens_per_vector": sum(map(len, units)) / len(units), "seconds": secs}
            for k in ks:
                acc, exact, _ = text_scores(res, chunks, toks[s], k)
                cells.append({**run, "k": k, "token_accuracy": acc, "exact": exact})
            n_exact = cells[-1]["exact"] * len(toks[s])
            run["seconds_per_exact_text"] = secs / n_exact if n_exact else None
            runs.append(run)
            log(f"{s} C={c} from {start}: " + ", ".join(
                f"K={x['k']} {x['token_accuracy']:.3f}/{x['exact']:.2f}"
                for x in cells[-len(ks):]) + f" ({secs:.0f} s)")
    return {"model": {"name": lm.name, "precision": lm.precision},
            "checkpoint": blob["path"], "texts": {s: len(t) for s, t in sets.items()},
            "ks": list(ks), "cells": cells, "runs": runs}


def table(rep: dict) -> str:
    ks = rep["ks"]
    lines = ["| set | start | C | e's | tok/e | " + " | ".join(f"K={k}" for k in ks)
             + " | s (to K=max) | s / exact text |",
             "|---|---|---|---|---|" + "---|" * len(ks) + "---|---|"]
    for run in rep["runs"]:
        cs = [x for x in rep["cells"] if all(x[f] == run[f] for f in ("set", "start", "chunk"))]
        spe = run["seconds_per_exact_text"]
        lines.append(f"| {run['set']} | {run['start']} | {run['chunk']} | {run['vectors']} | "
                     f"{run['tokens_per_vector']:.1f} | "
                     + " | ".join(f"{x['token_accuracy']:.3f} / {x['exact'] * 100:.0f} %"
                                  for x in cs)
                     + f" | {run['seconds']:.0f} | {'—' if spe is None else f'{spe:.1f}'} |")
    return "\n".join(lines)


def plot(rep: dict):
    import matplotlib.pyplot as plt  # lazy: only the plot needs it
    sets = sorted({x["set"] for x in rep["cells"]})
    chunks = sorted({r["chunk"] for r in rep["runs"]})
    # one colour per C, solid from the encoder and dashed from e0, so a C's pair reads at once
    colour = {c: plt.cm.viridis(i / max(1, len(chunks) - 1)) for i, c in enumerate(chunks)}
    fig, axes = plt.subplots(2, len(sets), figsize=(5.5 * len(sets), 7.5), squeeze=False)
    for j, s in enumerate(sets):
        for run in (r for r in rep["runs"] if r["set"] == s):
            cs = [x for x in rep["cells"]
                  if all(x[f] == run[f] for f in ("set", "start", "chunk"))]
            style = "-" if run["start"] == "encoder" else "--"
            label = f"{run['start']} C={run['chunk']}"
            for i, f in enumerate(("token_accuracy", "exact")):
                axes[i][j].plot([x["k"] for x in cs], [x[f] for x in cs], style, marker="o",
                                color=colour[run["chunk"]], label=label)
        for i, f in enumerate(("token accuracy", "texts exact")):
            axes[i][j].set(title=f"{s}: {f}", xlabel="refinement steps K", ylim=(0, 1.02))
            axes[i][j].grid(alpha=0.3)
        axes[0][j].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def summary(rep: dict) -> dict:
    top = max(rep["ks"])
    best = {}
    for x in rep["cells"]:
        if x["k"] == top:
            key = f"{x['set']}/{x['start']}"
            if key not in best or x["token_accuracy"] > best[key]["token_accuracy"]:
                best[key] = {"chunk": x["chunk"], "token_accuracy": round(x["token_accuracy"], 4),
                             "exact": round(x["exact"], 4)}
    return {"checkpoint": rep["checkpoint"], "best_at_max_k": best}


def metrics(rep: dict) -> dict:
    return {f"{x['set']}/{x['start']}/c{x['chunk']}/k{x['k']}/{f}": x[f]
            for x in rep["cells"] for f in ("token_accuracy", "exact")}


def child_runs(rep: dict, mr) -> None:
    """A nested MLflow run per cell, its coordinates as params."""
    for x in rep["cells"]:
        mr.child(f"{x['set']} {x['start']} C={x['chunk']} K={x['k']}",
                 {f: x[f] for f in ("set", "start", "chunk", "k")},
                 {f: x[f] for f in ("token_accuracy", "exact", "tokens_per_vector")})


def main(argv=None) -> int:
    def errors():
        from encoder.core import EncoderError
        return (*E.table_errors(), EncoderError)

    body = E.table_body("chunk_table", study, table, plot, summary, metrics, after=child_runs)
    return E.run_command(ChunkTableConfig, __doc__, argv, "chunk_table", body, errors=errors,
                         preflight=E.check_out_dir)


if __name__ == "__main__":
    sys.exit(main())
