"""Refinement: start per-text fitting at the encoder's e instead of the learned start.

`encoded_starts` encodes texts with a checkpoint and hands the LLM back as the plain decoder;
`proto.fit --init-from CKPT`, `data_gen.build init_from=CKPT` and `encoder.evaluate
refine=true` use it. m is frozen at the encoder's m (the corpus's), so refined e's belong to
the same corpus.

There is one refinement: the fitter (proto.fit) with the `refine` recipe (constant Adam at
its lr, no noise) as each row's first attempt from the encoder's e (proto.fit.start_rows_at).
A full fit (`fit_from`) falls back to e0 and the corpus recipe for a text the first attempt
leaves unsolved; `curve` is K refinement steps from each start, batched, with accuracy and
exact match after each K of a trace (0 = the start itself), and keeps each text's best e.
`encoder.encode refine_steps=K`, `encoder.evaluate curve=true` and the unrolled training loss
(encoder.losses) take the same recipe.
"""
from __future__ import annotations

import statistics
import time

import torch

from proto.fit import FitRow, Fitter, get_recipe, start_rows_at

from . import checkpoint as ckpt
from .models import encode_tokens

TRACE = (0, 1, 2, 5, 10, 20)
REFINE_LR = get_recipe("refine").lr


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
    """Fit e for each text with m frozen: from e_start rows (a first attempt with the
    `refine` recipe, then from e0 with `recipe`), or from e_center plus the recipe's noise."""
    fitter = Fitter(lm, recipe, batch_size=batch_size, e_center=e_center)
    if e_start is not None:
        start_rows_at(fitter, lambda row: e_start[int(row.key)])
    rows = [FitRow(list(t), str(i), 0) for i, t in enumerate(token_lists)]
    return fitter.fit(rows, m_mode="frozen", m=m, progress=progress)


def compare(lm, recipe, token_lists, e_enc, m, e0, batch_size: int = 32, log=None) -> dict:
    """The same texts fitted from the learned start (the recipe) and from the encoder's e
    (refinement first, then the recipe from e0)."""
    out = {}
    for name, start in (("start", None), ("encoder", e_enc)):
        t0 = time.time()
        res = fit_from(lm, recipe, token_lists, start, m, e0, batch_size)
        steps = [r.steps for r in res]
        out[name] = {"solved": sum(r.solved for r in res), "texts": len(res),
                     "steps_median": statistics.median(steps), "row_steps": sum(steps),
                     "seconds": round(time.time() - t0, 1), "steps": steps}
        if log:
            log(f"refine from {name}: {out[name]['solved']}/{len(res)} solved, median "
                f"{out[name]['steps_median']} steps, {out[name]['seconds']} s")
    return out


def refine_recipe(lr: float, steps: int):
    """K refinement steps from given starts: the `refine` recipe at lr, never falling back."""
    return get_recipe("refine", lr=lr, max_steps=max(1, steps), restart_after=0)


def curve(lm, recipe, token_lists, e_start: torch.Tensor | None, m: torch.Tensor,
          e_center: torch.Tensor | None, ks=TRACE, batch_size: int = 64) -> dict:
    """{K: {acc, exact}} after K steps (mean over texts), and the fitted results (each text's
    best e). With e_start the rows start there and run `recipe` throughout; else at e_center
    plus the recipe's noise."""
    fitter = Fitter(lm, recipe, batch_size=batch_size, e_center=e_center)
    if e_start is not None:
        start_rows_at(fitter, lambda row: e_start[int(row.key)], recipe)
    rows = [FitRow(list(t), str(i), 0) for i, t in enumerate(token_lists)]
    res = fitter.fit(rows, m_mode="frozen", m=m, max_steps=max(max(ks), 1), trace=tuple(ks))
    out = {}
    for k in ks:
        accs = [r.trace.get(k, r.accuracy) for r in res]
        out[k] = {"acc": sum(accs) / len(accs),
                  "exact": sum(a >= 1 - 1e-9 for a in accs) / len(accs)}
    return {"by_k": out, "results": res}


def text_scores(results, chunks: list[dict], toks: list[list[int]], k: int
                ) -> tuple[float, float, list[float]]:
    """(token accuracy, share of texts exact, accuracy per text) after K steps of a curve over
    chunk rows (proto.solution.chunk_rows): a text is exact when all its chunks are."""
    from proto.solution import by_text
    hits, exact, accs = 0.0, 0, []
    for i, ix in enumerate(by_text(chunks, len(toks))):
        got = [results[j].trace.get(k, results[j].accuracy) for j in ix]
        h = sum(a * len(chunks[j]["token_ids"]) for a, j in zip(got, ix))
        hits += h
        accs.append(h / len(toks[i]))
        exact += all(a >= 1 - 1e-9 for a in got)
    return hits / sum(len(t) for t in toks), exact / len(toks), accs


def curves(lm, start_recipe, token_lists, e_enc, m, e0, refine_lr: float, ks=TRACE,
           log=None, texts: tuple[list[dict], list[list[int]]] | None = None) -> dict:
    """The refinement curve from the encoder's e (refine_recipe) and from e0 (the start's
    recipe), side by side: {"encoder": {K: {acc, exact}}, "start": {...}}. With texts =
    (chunk rows, whole texts' tokens) the rows are chunks and acc / exact are per whole text
    (text_scores)."""
    out = {}
    for name, recipe, start, center in (
            ("encoder", refine_recipe(refine_lr, max(ks)), e_enc, None),
            ("start", start_recipe, None, e0)):
        t0 = time.time()
        got = curve(lm, recipe, token_lists, start, m, center, ks)
        if texts is None:
            out[name] = got["by_k"]
        else:
            out[name] = {k: dict(zip(("acc", "exact"), text_scores(got["results"], *texts,
                                                                     k)[:2])) for k in ks}
        if log:
            log(f"refinement curve from {name} ({time.time() - t0:.0f} s): " + ", ".join(
                f"K={k} {v['acc']:.3f}/{v['exact']:.2f}" for k, v in out[name].items()))
    return out
