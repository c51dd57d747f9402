"""Command-line entry points of the core: `python -m proto.fit` and `python -m proto.decode`.

  python -m proto.fit --text "The old lighthouse keeper climbed the stairs every evening."
  python -m proto.fit --texts-file texts.txt --restarts 2 --out sols.safetensors
  python -m proto.fit --texts-file texts.txt tail_restarts=3   # idle rows refit slow texts
  python -m proto.fit --model tiny-random --text "hello" max_steps=300    # tiny CPU run
  python -m proto.fit --config configs/proto/fit.yaml recipe=paper lr=0.02
  python -m proto.fit --texts-file texts.txt --init-from default   # refine the encoder's e
  python -m proto.decode sols.safetensors

Both print a one-line JSON summary as their last stdout line and log a run to MLflow
(experiment `proto`). Errors are one line on stderr and exit code 2.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

from . import config as C
from .io import read_texts


@dataclasses.dataclass
class FitConfig:
    model: str = "smollm2-135m"
    device: str = ""                 # '' = cuda if available, else cpu
    dtype: str = "auto"              # auto = bf16 where fast (CUDA, AMX CPUs), else fp32
    recipe: str = "default"          # default | default_v1 | sink | paper
    recipe_overrides: dict = dataclasses.field(default_factory=dict)  # any Recipe field
    restarts: int = 1
    batch_size: int = 16
    # extra seeds of still-unsolved texts in idle batch rows once no text waits; the first of
    # a text's rows to solve is its solution: x1.96 texts/h on 32 texts and never more
    # row-steps in eval.bench_tail; 0 = off
    tail_restarts: int = 3
    tail_after: float = 1.5          # a straggler: a row at this x the median solved steps
    seed: int = 0
    max_steps: int = 0               # 0 = the recipe's cap
    mlflow: bool = True

    def __post_init__(self):
        if self.restarts < 1:
            raise ValueError("restarts must be >= 1")
        if self.batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if min(self.max_steps, self.tail_restarts, self.tail_after) < 0:
            raise ValueError("max_steps, tail_restarts and tail_after must be >= 0")


_RECIPE_FIELDS = None


def _split_overrides(items: list[str]) -> list[str]:
    """Let `lr=0.03` mean `recipe_overrides.lr=0.03` for any Recipe field."""
    from .fit import Recipe
    names = {f.name for f in dataclasses.fields(Recipe)} - {"name"}
    out = []
    for it in items:
        key = it.split("=", 1)[0]
        out.append(f"recipe_overrides.{it}" if key in names and key not in
                   {f.name for f in dataclasses.fields(FitConfig)} else it)
    return out


def _read_texts(args) -> list[str]:
    try:
        return read_texts(args.text, args.texts_file)
    except ValueError as exc:
        raise C.ConfigError(str(exc)) from None


def _fail(msg: str) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return 2


def _init_from(spec: str, cfg: FitConfig, lm, fitter, toks):
    """Refinement: rows start at the encoder's e (plus small noise); returns the frozen m."""
    from encoder.core import EncoderError
    from encoder.refine import encoded_starts, use_starts
    try:
        e, m, blob = encoded_starts(spec, lm, toks)
    except EncoderError as exc:
        raise C.ConfigError(str(exc)) from None
    arr = blob["arrangement"]
    if (arr["name"], tuple(arr["prefix"])) != (fitter.arr.name, tuple(fitter.arr.prefix)):
        raise C.ConfigError(f"encoder {blob['path']} decodes with {arr['name']} and prefix "
                            f"{arr['prefix']}, the recipe with {fitter.arr.name} and "
                            f"{list(fitter.arr.prefix)}")
    use_starts(fitter, lambda row: e[int(row.key[4:])], cfg.recipe_overrides)
    return m


def fit_main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m proto.fit", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--text", action="append", help="a text to fit (repeatable)")
    p.add_argument("--texts-file", help="one text per line (UTF-8)")
    p.add_argument("--model", help="alias, hub id or local path (default smollm2-135m)")
    p.add_argument("--recipe", help="default | sink | paper")
    p.add_argument("--restarts", type=int)
    p.add_argument("--out", help="solution file to write (.safetensors)")
    p.add_argument("--init-from", help="encoder checkpoint (or 'default'): start each text at "
                   "the encoder's e, m frozen at the encoder's m (refinement)")
    p.add_argument("--config", help="YAML config (FitConfig fields)")
    p.add_argument("overrides", nargs="*", help="key=value (FitConfig or Recipe fields)")
    a = p.parse_args(argv)
    from .fit import Fitter, FitRow, get_recipe
    from .models import ModelLoadError, load_model
    from . import solution
    from .tracking import run as mlflow_run
    try:
        ov = _split_overrides(a.overrides)
        for flag, key in ((a.model, "model"), (a.recipe, "recipe"), (a.restarts, "restarts")):
            if flag is not None:
                ov.append(f"{key}={flag}")
        cfg = C.load(FitConfig, a.config, ov)
        recipe = get_recipe(cfg.recipe, **cfg.recipe_overrides)
        if cfg.max_steps:
            recipe = dataclasses.replace(recipe, max_steps=cfg.max_steps)
        texts = _read_texts(a)
        out = Path(a.out) if a.out else Path("outputs/fit") / time.strftime(
            "sol-%Y%m%d-%H%M%S.safetensors")
        if out.exists() and out.is_dir():
            raise C.ConfigError(f"--out {out} is a directory")
        lm = load_model(cfg.model, device=cfg.device or None, dtype=cfg.dtype)
        fitter = Fitter(lm, recipe, batch_size=cfg.batch_size, seed=cfg.seed,
                        tail_restarts=cfg.tail_restarts, tail_after=cfg.tail_after)
        toks = [lm.tokenize(t) for t in texts]
        for t, ids in zip(texts, toks):
            if not ids:
                raise C.ConfigError(f"text {t!r} has no tokens")
            try:
                fitter.check_length(len(ids))
            except ValueError as exc:
                raise C.ConfigError(str(exc)) from None
        frozen_m = _init_from(a.init_from, cfg, lm, fitter, toks) if a.init_from else None
        recipe = fitter.recipe
    except (C.ConfigError, ModelLoadError, ValueError) as exc:
        return _fail(str(exc))

    rows = [FitRow(ids, f"text{i}", r) for i, ids in enumerate(toks) for r in range(cfg.restarts)]

    def progress(s):
        if s["step"] % 10 == 0 or s["done"] == s["total"]:
            print(f"\rstep {s['step']:5d} | done {s['done']}/{s['total']} solved {s['solved']} "
                  f"| {s['step_seconds']:.2f} s/step | {s['seconds']:.0f} s", end="",
                  file=sys.stderr, flush=True)

    t0 = time.time()
    with mlflow_run("proto", cfg, run_name="fit", enabled=cfg.mlflow,
                    params={"recipe_resolved": json.dumps(dataclasses.asdict(recipe))}) as mr:
        res = fitter.fit(rows, progress=progress, m_mode="frozen" if frozen_m is not None
                         else "row", m=frozen_m)
        print(file=sys.stderr)
        secs = time.time() - t0
        import torch
        e = torch.stack([r.e for r in res])
        m = torch.stack([r.m for r in res]) if fitter.arr.uses_m else None
        meta = {
            "model": lm.identity, "precision": str(lm.dtype).replace("torch.", ""),
            "arrangement": {**fitter.arr.to_dict(), "prefix_spec": recipe.prefix},
            "recipe": dataclasses.asdict(recipe), "config": C.to_dict(cfg),
            "rows": [{"text": texts[i // cfg.restarts], "restart": r.restart,
                      "token_ids": rows[i].token_ids, "accuracy": r.accuracy,
                      "c_tokens": r.c_tokens, "steps": r.steps, "seconds": r.seconds,
                      "loss": r.loss, "status": r.status} for i, r in enumerate(res)],
        }
        solution.save(out, e, m, meta)
        per_text = {}
        for i, r in enumerate(res):
            per_text.setdefault(i // cfg.restarts, []).append(r)
        best = [max(v, key=lambda r: r.accuracy) for v in per_text.values()]
        summary = {
            "texts": len(texts), "rows": len(res), "solved": sum(b.solved for b in best),
            "accuracy_mean": sum(b.accuracy for b in best) / len(best),
            "steps_median": statistics.median(r.steps for r in res),
            "seconds": round(secs, 2), "seconds_per_text": round(secs / len(texts), 2),
            "model": lm.name, "recipe": recipe.name, "out": str(out),
        }
        mr.metrics({"fit/solved": summary["solved"], "fit/accuracy_mean":
                    summary["accuracy_mean"], "fit/steps_median": summary["steps_median"],
                    "fit/seconds": secs})
        mr.artifact(out)
    for i, b in enumerate(best):
        print(f"text {i}: accuracy {b.accuracy:.3f} ({b.c_tokens}/{b.n_tokens} tokens) in "
              f"{b.steps} steps, {b.seconds:.1f} s")
    print(json.dumps(summary))
    return 0


def decode_main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m proto.decode", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("solution", help="solution file written by proto.fit")
    p.add_argument("--model", help="override the model recorded in the solution")
    p.add_argument("--device", default="")
    p.add_argument("--no-mlflow", action="store_true")
    a = p.parse_args(argv)
    import torch
    from . import solution
    from .arrangement import Arrangement
    from .decode import autoregressive, hits, one_pass
    from .models import ModelLoadError, load_model
    from .tracking import run as mlflow_run
    try:
        e, m, meta = solution.load(a.solution)
        arr_meta = meta["arrangement"]
        arr = Arrangement.from_dict(arr_meta)
        name = a.model or meta["model"]["name"]
        lm = load_model(name, device=a.device or None, dtype=meta.get("precision", "auto"))
    except (solution.SolutionError, ModelLoadError, ValueError, KeyError) as exc:
        return _fail(str(exc))
    warn = None
    if lm.weights_sha256 != meta["model"]["weights_sha256"]:
        warn = (f"model weights differ from the ones the solution was fitted with "
                f"({lm.weights_sha256[:12]} vs {meta['model']['weights_sha256'][:12]})")
        print(f"warning: {warn}", file=sys.stderr)
    out_rows = []
    with mlflow_run("proto", None, run_name="decode", enabled=not a.no_mlflow,
                    params={"solution": a.solution, "model": name}) as mr:
        for i, row in enumerate(meta["rows"]):
            ids = row["token_ids"]
            n = len(ids)
            tgt = torch.tensor([ids], device=lm.device)
            if arr.autoregressive:
                pred = autoregressive(lm, arr, e[i], n)
            else:
                pred = one_pass(lm, arr, e[i:i + 1], None if m is None else m[i:i + 1], n)
            acc, c = hits(pred, tgt)
            text = lm.detokenize(pred[0].tolist())
            print(text)
            out_rows.append({"row": i, "accuracy": acc[0], "c_tokens": c[0], "n_tokens": n,
                             "exact": acc[0] == 1.0, "recorded_accuracy": row.get("accuracy")})
        summary = {"solution": a.solution, "rows": len(out_rows),
                   "exact": sum(r["exact"] for r in out_rows),
                   "accuracy_mean": sum(r["accuracy"] for r in out_rows) / len(out_rows),
                   "model": name, "results": out_rows}
        if warn:
            summary["warning"] = warn
        mr.metrics({"decode/accuracy_mean": summary["accuracy_mean"],
                    "decode/exact": summary["exact"]})
    print(json.dumps(summary))
    return 0
