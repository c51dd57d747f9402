"""Refinement: start per-text fitting at the encoder's e instead of the learned start.

`encoded_starts` encodes texts with a checkpoint and hands the LLM back as the plain decoder;
`proto.fit --init-from CKPT`, `data_gen.build init_from=CKPT` and `encoder.evaluate
refine=true` use it. Rows start at the encoder's e plus the recipe's init noise, with m frozen
at the encoder's m (the corpus's), so refined e's belong to the same corpus.

`curve` is amortised refinement as a product path: K steps of the decode loss from each start,
batched in the fitter, with accuracy and exact match after each K of a trace (0 = the start
itself). From the encoder's e the steps are plain Adam at a constant `refine_lr`, with no
init noise, since a start that is mostly right is spoiled by the fitting recipe's large first
steps; from e0 they are the corpus recipe's own (its lr, schedule and noise).
"""
from __future__ import annotations

import dataclasses
import statistics
import time

import torch

from proto.fit import FitRow, Fitter, start_rows_at

from . import checkpoint as ckpt
from .models import encode_tokens

TRACE = (0, 1, 2, 5, 10, 20)
# the constant Adam lr of refinement: 0.3 > 0.2 > 0.1 > 0.05 after every K on held-out prose
# (positional encoders, docs/research/positional-encoder); the default encoder's sentences
# after 10 steps: 0.38 at 0.3 vs 0.28 at 0.05
REFINE_LR = 0.3
# the noise of a K-step refinement: none to speak of (init_std 0 would mean the embedding std)
CURVE_NOISE = 1e-6


def encoded_starts(spec: str, lm, token_lists: list[list[int]]):
    """(e [R, d] on cpu, m [d], checkpoint blob); lm is the decoder again afterwards. The
    encoder's start provider (proto.providers), registered in pyproject.toml."""
    enc, _, m, blob = ckpt.load(spec, lm=lm)
    e = encode_tokens(enc, token_lists)
    enc.release()
    if m is None:
        raise ValueError(f"encoder {blob['path']} has no m (arrangement without m)")
    return e, m.detach().float().cpu(), blob


def start_record(spec: str) -> dict:
    """The checkpoint's precision record for the decoder that refines its e's."""
    blob = ckpt.read(spec)
    return {"record": ckpt.precision(blob), "what": f"encoder {blob['path']}"}


encoded_starts.record = start_record


def fit_from(lm, recipe, token_lists, e_start: torch.Tensor | None, m: torch.Tensor,
             e_center: torch.Tensor | None, batch_size: int = 32, progress=None):
    """Fit e for each text with m frozen; starts at e_start rows (or e_center) plus noise."""
    fitter = Fitter(lm, recipe, batch_size=batch_size, e_center=e_center)
    if e_start is not None:
        start_rows_at(fitter, lambda row: e_start[int(row.key)])
    rows = [FitRow(list(t), str(i), 0) for i, t in enumerate(token_lists)]
    return fitter.fit(rows, m_mode="frozen", m=m, progress=progress)


def compare(lm, recipe, token_lists, e_enc, m, e0, batch_size: int = 32, log=None) -> dict:
    """The same recipe and texts from the learned start (with the recipe's init noise) and from
    the encoder's e (with refinement's smaller noise)."""
    out = {}
    for name, start, center in (("start", None, e0), ("encoder", e_enc, None)):
        t0 = time.time()
        res = fit_from(lm, recipe, token_lists, start, m, center, batch_size)
        steps = [r.steps for r in res]
        out[name] = {"solved": sum(r.solved for r in res), "texts": len(res),
                     "steps_median": statistics.median(steps), "row_steps": sum(steps),
                     "seconds": round(time.time() - t0, 1), "steps": steps}
        if log:
            log(f"refine from {name}: {out[name]['solved']}/{len(res)} solved, median "
                f"{out[name]['steps_median']} steps, {out[name]['seconds']} s")
    return out


def refine_recipe(recipe, lr: float, steps: int):
    """The recipe for K refinement steps from an encoder's e: constant lr, no noise."""
    return dataclasses.replace(recipe, lr=lr, schedule="constant", warmup_steps=0,
                               max_steps=max(1, steps), restart_after=0, init_std=CURVE_NOISE)


def curve(lm, recipe, token_lists, e_start: torch.Tensor | None, m: torch.Tensor,
          e_center: torch.Tensor | None, ks=TRACE, batch_size: int = 64) -> dict:
    """{K: {acc, exact}} after K steps (mean over texts), and the fitted results. With e_start
    the rows start there (the recipe's own init_std is their noise); else at e_center plus
    the recipe's noise."""
    fitter = Fitter(lm, recipe, batch_size=batch_size, e_center=e_center)
    if e_start is not None:
        start_rows_at(fitter, lambda row: e_start[int(row.key)], {"init_std": recipe.init_std})
    rows = [FitRow(list(t), str(i), 0) for i, t in enumerate(token_lists)]
    res = fitter.fit(rows, m_mode="frozen", m=m, max_steps=max(max(ks), 1), trace=tuple(ks))
    out = {}
    for k in ks:
        accs = [r.trace.get(k, r.accuracy) for r in res]
        out[k] = {"acc": sum(accs) / len(accs),
                  "exact": sum(a >= 1 - 1e-9 for a in accs) / len(accs)}
    return {"by_k": out, "results": res}


def curves(lm, start_recipe, token_lists, e_enc, m, e0, refine_lr: float, ks=TRACE,
           log=None) -> dict:
    """The refinement curve from the encoder's e (refine_recipe) and from e0 (the start's
    recipe), side by side: {"encoder": {K: {acc, exact}}, "start": {...}}."""
    out = {}
    for name, recipe, start, center in (
            ("encoder", refine_recipe(start_recipe, refine_lr, max(ks)), e_enc, None),
            ("start", start_recipe, None, e0)):
        t0 = time.time()
        out[name] = curve(lm, recipe, token_lists, start, m, center, ks)["by_k"]
        if log:
            log(f"refinement curve from {name} ({time.time() - t0:.0f} s): " + ", ".join(
                f"K={k} {v['acc']:.3f}/{v['exact']:.2f}" for k, v in out[name].items()))
    return out
