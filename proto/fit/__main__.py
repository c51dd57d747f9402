"""`python -m proto.fit`: fit the proto-tokens of one or a few texts and write a solution file.

  python -m proto.fit --text "The old lighthouse keeper climbed the stairs every evening."
  python -m proto.fit --texts-file texts.txt --restarts 2 --out sols.safetensors
  python -m proto.fit --texts-file texts.txt tail_restarts=0   # no backups of slow texts
  python -m proto.fit --model tiny-random --text "hello" max_steps=300    # tiny CPU run
  python -m proto.fit --config configs/proto/fit.yaml recipe=paper lr=0.02
  python -m proto.fit --texts-file texts.txt --init-from default   # start at the encoder's e
  python -m proto.fit --texts-file texts.txt --chunk 8 --out chunks.safetensors  # e per 8 tokens
  python -m proto.fit --model tiny-random --text "hello there, the sea and the sky" --chunk 4 \\
      max_steps=300 --out /tmp/chunks.safetensors               # tiny CPU run, 8 chunks
  python -m proto.decode sols.safetensors

Any Recipe field may be given as key=value (`lr=0.02` means recipe_overrides.lr=0.02).
Each text's e starts at the recipe's start (`default`: the learned start e0 shipped in
proto/starts/, plus noise). --init-from SPEC starts it instead at an encoder's e for that text
(a checkpoint, or 'default' for the shipped one; proto.providers) with m frozen at the
encoder's m: the first attempt refines that e with `init_recipe` (default `refine`: constant
lr 1.0, no noise, `init_overrides.restart_after` steps), and a text it leaves unsolved starts
again from e0 with the recipe, as do its tail restarts (docs/research/encoder-starts).
--chunk C splits each text's tokens into chunks of C (the last may be shorter) and fits every
chunk as its own row of one batched fit: a chunked solution file (proto.solution) with one
row per chunk, the best of its restarts, which proto.decode rebuilds into the whole texts from
one forward pass. A text is solved when all its chunks are; texts longer than the decoder's
context fit this way.

Prints a one-line JSON summary as the last stdout line (its `start` names where e started)
and logs a run to MLflow (experiment `proto`). Errors are one line on stderr and exit code 2.
"""
from __future__ import annotations

import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from proto import config as C, solution
from proto.arrangement import Arrangement, prefix_ids
from proto.fit import FitRow, Fitter, Recipe, get_recipe, start_rows_at
from proto.io import read_texts
from proto.models import ModelFields, ModelLoadError, load_model
from proto.onepass import OnePass
from proto.progress import FitProgress
from proto.providers import start_record, text_starts
from proto.start import PACKAGED, packaged_start
from proto.tracking import run as mlflow_run


@dataclasses.dataclass
class FitConfig(ModelFields):
    recipe: str = "default"          # default | default_v1 | sink | paper
    recipe_overrides: dict = dataclasses.field(default_factory=dict)  # any Recipe field
    text: list[str] = dataclasses.field(default_factory=list)   # texts to fit (--text)
    texts_file: str = ""             # one text per line (UTF-8)
    out: str = ""                    # solution file ('' = outputs/fit/sol-<time>.safetensors)
    # start each text at a start provider's e with m frozen at its m (refinement)
    init_from: str = ""
    init_recipe: str = "refine"      # the first attempt's recipe from init_from's e
    init_overrides: dict = dataclasses.field(default_factory=dict)  # its Recipe fields
    restarts: int = 1
    batch_size: int = 16
    # extra seeds of still-unsolved texts in idle batch rows once no text waits; the first of
    # a text's rows to solve is its solution: x1.96 texts/h on 32 texts and never more
    # row-steps in eval.bench_tail; 0 = off
    tail_restarts: int = 3
    tail_after: float = 1.5          # a straggler: a row at this x the median solved steps
    seed: int = 0
    max_steps: int = 0               # 0 = the recipe's cap
    chunk: int = 0                   # tokens per e (0 = one e per text)
    mlflow: bool = True

    def __post_init__(self):
        if self.restarts < 1:
            raise ValueError("restarts must be >= 1")
        if self.batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if min(self.max_steps, self.tail_restarts, self.tail_after) < 0:
            raise ValueError("max_steps, tail_restarts and tail_after must be >= 0")
        if self.chunk < 0:
            raise ValueError("chunk must be >= 0 (0 = one e per text)")
        get_recipe(self.init_recipe, **self.init_overrides)   # unknown name or field -> error


def recipe_shorthand(argv: list[str]) -> list[str]:
    """Let `lr=0.03` mean `recipe_overrides.lr=0.03` for any Recipe field."""
    names = {f.name for f in dataclasses.fields(Recipe)} - {"name"}
    own = {f.name for f in dataclasses.fields(FitConfig)}
    out = []
    for it in argv:
        key = it.split("=", 1)[0] if "=" in it and not it.startswith("-") else ""
        out.append(f"recipe_overrides.{it}" if key in names and key not in own else it)
    return out


def provider_starts(spec: str, lm, arr: Arrangement, toks) -> tuple:
    """(e per text, the frozen m, the start's name) from the start provider; ValueError when
    its arrangement is not the recipe's."""
    e, m, info = text_starts(spec, lm, toks)
    own = info["arrangement"]
    if (own["name"], tuple(own["prefix"])) != (arr.name, tuple(arr.prefix)):
        raise ValueError(f"{info['path']} decodes with {own['name']} and prefix "
                         f"{own['prefix']}, the recipe with {arr.name} and {list(arr.prefix)}")
    return e, m, f"encoder {info['path']} step {info['step']} (its e per text, m frozen at its m)"


def recipe_start(fitter) -> str:
    """The name of where the recipe starts e, for the summary: a user wants to know whether
    the learned start was found for this model."""
    spec = fitter.recipe.start
    if fitter.start is None:
        why = "no learned start fits this model, " if spec == "learned" else ""
        return f"origin ({why}the recipe's init noise alone)"
    if spec == "learned":
        path = packaged_start(fitter.lm)
        return f"e0 (learned start, {path.relative_to(PACKAGED.parents[1])})"
    return f"e0 (start file {spec})"


def setup(cfg: FitConfig):
    """(texts, token lists, fitter, frozen m or None, start's name, out path); ValueError
    with one line."""
    recipe = get_recipe(cfg.recipe, **cfg.recipe_overrides)
    if cfg.max_steps:
        recipe = dataclasses.replace(recipe, max_steps=cfg.max_steps)
    texts = read_texts(cfg.text, cfg.texts_file)
    out = Path(cfg.out) if cfg.out else Path("outputs/fit") / time.strftime(
        "sol-%Y%m%d-%H%M%S.safetensors")
    if out.is_dir():
        raise ValueError(f"--out {out} is a directory")
    # from an encoder's e: the decoder in the encoder's precision (as encoder.encode loads it)
    record = start_record(cfg.init_from) if cfg.init_from else {}
    lm = load_model(cfg.model, device=cfg.device or None, dtype=cfg.dtype, **record)
    toks = [lm.tokenize(t) for t in texts]
    for t, ids in zip(texts, toks):
        if not ids:
            raise ValueError(f"text {t!r} has no tokens")
    chunks = solution.chunk_rows(toks, cfg.chunk) if cfg.chunk else None
    units = [c["token_ids"] for c in chunks] if chunks else toks
    # every input is checked before the fitter exists: building it can warn (no learned
    # start for the model), and a rejected command prints only its error line
    arr = Arrangement(recipe.arrangement, prefix_ids(lm.tokenizer, recipe.prefix))
    check_lengths(OnePass(lm, arr), units, cfg.chunk)
    starts = provider_starts(cfg.init_from, lm, arr, units) if cfg.init_from else None
    fitter = Fitter(lm, recipe, batch_size=cfg.batch_size, seed=cfg.seed,
                    tail_restarts=cfg.tail_restarts, tail_after=cfg.tail_after)
    if starts is None:
        return texts, toks, chunks, fitter, None, recipe_start(fitter), out
    e, m, start = starts
    start_rows_at(fitter, lambda row: e[int(row.key[4:])],
                  get_recipe(cfg.init_recipe, **cfg.init_overrides))
    return texts, toks, chunks, fitter, m, start, out


def check_lengths(onepass, units: list[list[int]], chunk: int) -> None:
    for ids in units:
        try:
            onepass.check_length(len(ids))
        except ValueError as exc:
            if chunk:
                raise
            raise ValueError(f"{exc}; --chunk C fits it as several e's of C tokens") from None


def result_row(r) -> dict:
    return {"restart": r.restart, "accuracy": r.accuracy, "c_tokens": r.c_tokens,
            "steps": r.steps, "seconds": r.seconds, "loss": r.loss, "status": r.status}


def write(cfg: FitConfig, fitter, texts, rows, res, out: Path) -> None:
    meta = {"rows": [{"text": texts[i // cfg.restarts], "token_ids": rows[i].token_ids,
                      **result_row(r)} for i, r in enumerate(res)]}
    save(cfg, fitter, res, meta, out)


def write_chunked(cfg: FitConfig, fitter, texts, toks, chunks, best, out: Path) -> None:
    """One row per chunk (its best restart), with the whole texts beside them."""
    lm = fitter.lm
    meta = {"rows": [{"text": lm.detokenize(c["token_ids"]), **c, **result_row(b)}
                     for c, b in zip(chunks, best)],
            "texts": [{"text": t, "token_ids": ids} for t, ids in zip(texts, toks)]}
    save(cfg, fitter, best, meta, out)


def save(cfg: FitConfig, fitter, res, meta: dict, out: Path) -> None:
    lm, recipe = fitter.lm, fitter.recipe
    e = torch.stack([r.e for r in res])
    m = torch.stack([r.m for r in res]) if fitter.arr.uses_m else None
    solution.save(out, e, m, {
        "model": lm.identity, "precision": lm.precision,
        "arrangement": {**fitter.arr.to_dict(), "prefix_spec": recipe.prefix},
        "recipe": dataclasses.asdict(recipe), "config": C.to_dict(cfg), **meta})


def chunk_summary(texts, chunks, best) -> tuple[dict, list[str]]:
    """Texts solved (all their chunks), chunks solved, and a line per text."""
    by_text = [[best[i] for i in ix] for ix in solution.by_text(chunks, len(texts))]
    lines, accs = [], []
    for i, bs in enumerate(by_text):
        c, n = sum(b.c_tokens for b in bs), sum(b.n_tokens for b in bs)
        accs.append(c / n)
        lines.append(f"text {i}: accuracy {c / n:.3f} ({c}/{n} tokens), "
                     f"{sum(b.solved for b in bs)}/{len(bs)} chunks solved, "
                     f"{max(b.steps for b in bs)} steps at most")
    return {"solved": sum(all(b.solved for b in bs) for bs in by_text),
            "chunks": len(chunks), "chunks_solved": sum(b.solved for b in best),
            "accuracy_mean": sum(accs) / len(accs)}, lines


def main(argv=None) -> int:
    argv = recipe_shorthand(list(sys.argv[1:] if argv is None else argv))
    cfg = C.parse_cli(FitConfig, __doc__, argv, prog="python -m proto.fit",
                      paths={"texts_file": "one text per line (UTF-8)",
                             "out": "solution file to write (.safetensors)",
                             "init_from": "encoder checkpoint (or 'default'): start each "
                                          "text's e at the encoder's e instead of the "
                                          "learned start, m frozen at the encoder's m "
                                          "(first attempt: init_recipe; then from e0)",
                             "model": "alias, hub id or local path (default smollm2-135m)",
                             "recipe": "default | default_v1 | sink | paper",
                             "restarts": "rows per text",
                             "chunk": "tokens per e: split each text into chunks of C "
                                      "tokens, one e each (0 = one e per text)"},
                      lists={"text": "a text to fit (repeatable)"})
    if cfg is None:
        return 2
    try:
        texts, toks, chunks, fitter, frozen_m, start, out = setup(cfg)
    except (ModelLoadError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    # a chunked fit's rows are its chunks: every chunk of every text in one batched fit
    units = [c["token_ids"] for c in chunks] if chunks else toks
    rows = [FitRow(ids, f"text{i}", r) for i, ids in enumerate(units)
            for r in range(cfg.restarts)]
    t0 = time.time()
    recipe = fitter.recipe
    with mlflow_run("proto", cfg, run_name="fit", enabled=cfg.mlflow,
                    params={"recipe_resolved": json.dumps(dataclasses.asdict(recipe))}) as mr:
        prog = FitProgress(len(rows))
        res = fitter.fit(rows, progress=prog, m_mode="frozen" if frozen_m is not None
                         else "row", m=frozen_m)
        prog.close()
        secs = time.time() - t0
        best = [max(res[i * cfg.restarts:(i + 1) * cfg.restarts], key=lambda r: r.accuracy)
                for i in range(len(units))]
        if chunks:
            write_chunked(cfg, fitter, texts, toks, chunks, best, out)
            counts, lines = chunk_summary(texts, chunks, best)
        else:
            write(cfg, fitter, texts, rows, res, out)
            counts = {"solved": sum(b.solved for b in best),
                      "accuracy_mean": sum(b.accuracy for b in best) / len(best)}
            lines = [f"text {i}: accuracy {b.accuracy:.3f} ({b.c_tokens}/{b.n_tokens} tokens) "
                     f"in {b.steps} steps, {b.seconds:.1f} s" for i, b in enumerate(best)]
        summary = {
            "texts": len(texts), "rows": len(res), **counts,
            "steps_median": statistics.median(r.steps for r in res),
            "seconds": round(secs, 2), "seconds_per_text": round(secs / len(texts), 2),
            "model": fitter.lm.name, "recipe": recipe.name, "start": start, "out": str(out),
        }
        mr.metrics({"fit/solved": summary["solved"], "fit/accuracy_mean":
                    summary["accuracy_mean"], "fit/steps_median": summary["steps_median"],
                    "fit/seconds": secs})
        mr.artifact(out)
    print("\n".join(lines))
    C.print_summary(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
