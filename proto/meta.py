"""Learn a start for fitting (Reptile): one text-independent (e0, m0) from which texts solve sooner.

  python -m proto.meta --config configs/proto/meta.yaml out=outputs/meta/s1.pt   # stage 1, ~25 min here
  # stages 2-4 (K=50 steps, 32 texts an iteration): ~8 min on an H100 in all, ~10 h on a 2-core CPU
  python -m proto.meta --config configs/proto/meta-k50.yaml init=outputs/meta/s1.pt iters=30 \\
      text_seed=2000 out=outputs/meta/s2.pt
  python -m proto.meta --config configs/proto/meta-k50.yaml init=outputs/meta/s2.pt iters=20 \\
      text_seed=3000 out=outputs/meta/s3.pt
  python -m proto.meta --config configs/proto/meta-k50.yaml init=outputs/meta/s3.pt iters=25 \\
      text_seed=4000 out=outputs/meta/s4.pt
  python -m proto.meta model=tiny-random n_tokens=8 iters=2 inner_steps=3 out=/tmp/start.pt mlflow=false  # tiny CPU run

Each iteration draws `texts_per_source` new texts of `n_tokens` tokens from each source
(text seed `text_seed + iteration`, so never the studies' texts of seeds 0 and 1), starts every
row at (e0, m0) plus the recipe's own N(0, std) noise, fits `inner_steps` steps with the recipe
(a row that solves sooner stops there), and moves the start toward the rows' mean end point:
e0 += eps * mean(e - e0), m0 likewise, with eps decaying linearly from `eps` to 0. The mean
cancels what is text-specific; what stays is where every text's fit is heading early on.
`init` goes on from an existing start (a path, or `learned`) instead of a random point: the
shipped start (proto/starts/smollm2-135m.pt) is stage 1 followed by eight such K=50 stages
(three of 16 + 16 texts an iteration, five of 128 + 128; its .config.yaml records them; they ran
on an H100 through the same learn_start).
Use the result with `recipe_overrides.start=PATH` (or `start: learned` for the shipped one).
Writes the start file (updated after every iteration, atomically), config.yaml, history.json
and a plot of loss and accuracy after `inner_steps` per iteration beside it; logs to MLflow
(experiment `proto`). Last stdout line: JSON summary. Errors: one line on stderr, exit 2.
"""
from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

import torch

from . import config as C
from .arrangement import Arrangement, prefix_ids
from .fit import FitRow, Fitter, get_recipe, init_vector
from .io import atomic_write_json
from .models import ModelFields, ModelLoadError, load_model
from .onepass import OnePass
from .sources import sample_texts
from .start import load_start, save_start
from .tracking import run as mlflow_run


@dataclasses.dataclass
class MetaConfig(ModelFields):
    recipe: str = "default_v1"
    recipe_overrides: dict = dataclasses.field(default_factory=lambda: {"lr": 0.2})
    n_tokens: int = 32
    sources: list[str] = dataclasses.field(default_factory=lambda: ["britannica", "random-words"])
    texts_per_source: int = 4
    iters: int = 16
    inner_steps: int = 25
    eps: float = 1.0
    # where the start begins: '' a random point (seeded), or a start file / 'learned' to go on
    # from (the shipped start was learned in stages this way: docs/research/learned-starts)
    init: str = ""
    text_seed: int = 1000
    seed: int = 0
    out: str = "outputs/meta/start.pt"
    mlflow: bool = True

    def __post_init__(self):
        for k in ("n_tokens", "texts_per_source", "iters", "inner_steps"):
            if getattr(self, k) < 1:
                raise ValueError(f"{k} must be >= 1")
        if not 0 < self.eps <= 1:
            raise ValueError("eps must be in (0, 1]")
        if not self.sources:
            raise ValueError("sources must not be empty")


def learn_start(lm, recipe, batches, inner_steps: int, eps: float = 1.0, seed: int = 0,
                start: tuple[torch.Tensor, torch.Tensor] | None = None, progress=None):
    """Reptile over `batches` (a list of lists of token-id lists, one list per iteration).

    Returns (e0, m0, history); history[i] = mean loss / accuracy / solved after the inner fit
    of iteration i, and the size of the step the start took."""

    if recipe.start or recipe.restart_after:
        recipe = dataclasses.replace(recipe, start="", restart_after=0)
    fitter = Fitter(lm, recipe, batch_size=max(len(b) for b in batches), seed=seed)
    d = lm.d_model
    if start is None:
        e0 = init_vector(seed * 2 + 1, d, fitter.std)
        m0 = init_vector(seed * 2 + 2, d, fitter.std)
    else:
        e0, m0 = (v.detach().float().cpu().reshape(d).clone() for v in start)
    history = []
    iters = len(batches)
    for it, texts in enumerate(batches):
        fitter.start = (e0, m0)
        rows = [FitRow(list(t), key=f"meta{it}:{j}") for j, t in enumerate(texts)]
        res = fitter.fit(rows, max_steps=inner_steps)
        E = torch.stack([r.e for r in res])
        M = torch.stack([r.m for r in res])
        if not (torch.isfinite(E).all() and torch.isfinite(M).all()):
            raise ValueError(f"iteration {it}: non-finite e or m after the inner fit")
        rate = eps * (1 - it / iters)
        de, dm = (E - e0).mean(0), (M - m0).mean(0)
        e0, m0 = e0 + rate * de, m0 + rate * dm
        h = {"iter": it, "loss": sum(r.loss for r in res) / len(res),
             "accuracy": sum(r.accuracy for r in res) / len(res),
             "solved": sum(r.solved for r in res), "rows": len(res),
             "step_e": float(rate * de.norm()), "step_m": float(rate * dm.norm()),
             "norm_e0": float(e0.norm()), "norm_m0": float(m0.norm())}
        history.append(h)
        if progress:
            progress(h, e0, m0)
    return e0, m0, history


def plot(history, path: Path):
    import matplotlib  # lazy: matplotlib (~1 s) is needed only to draw plots
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: matplotlib (~1 s) is needed only to draw plots
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.2))
    it = [h["iter"] for h in history]
    ax[0].plot(it, [h["loss"] for h in history], marker="o")
    ax[0].set(xlabel="iteration", ylabel="loss after the inner fit")
    ax[1].plot(it, [h["accuracy"] for h in history], marker="o")
    ax[1].set(xlabel="iteration", ylabel="token accuracy after the inner fit", ylim=(0, 1))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return fig


def main(argv=None) -> int:
    cfg = C.parse_cli(MetaConfig, __doc__, argv, prog="python -m proto.meta")
    if cfg is None:
        return 2
    out = Path(cfg.out)
    try:
        recipe = get_recipe(cfg.recipe, **cfg.recipe_overrides)
        if out.exists() and out.is_dir():
            raise ValueError(f"out {out} is a directory")
        lm = load_model(cfg.model, device=cfg.device or None, dtype=cfg.dtype)
        init = load_start(cfg.init, lm, recipe.arrangement, recipe.prefix) if cfg.init else None
        arr = Arrangement(recipe.arrangement, prefix_ids(lm.tokenizer, recipe.prefix))
        OnePass(lm, arr).check_length(cfg.n_tokens, "a text")
        batches = []
        for it in range(cfg.iters):
            b = []
            for src in cfg.sources:
                b += [ids for _, ids in sample_texts(lm.tokenize, src, cfg.n_tokens,
                                                      cfg.texts_per_source,
                                                      seed=cfg.text_seed + it)]
            batches.append(b)
    except (ValueError, TypeError, ModelLoadError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stem = out.with_suffix("")
    out.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{stem}.config.yaml").write_text(C.dump_yaml(cfg))
    t0 = time.time()
    with mlflow_run("proto", cfg, run_name="meta", enabled=cfg.mlflow) as mr:
        def progress(h, e0, m0):
            save_start(out, e0, m0, lm, recipe.arrangement, recipe.prefix,
                       C.to_dict(cfg) | {"iterations_done": h["iter"] + 1})
            mr.metrics({k: h[k] for k in ("loss", "accuracy", "solved")}, step=h["iter"])
            print(f"iter {h['iter'] + 1}/{cfg.iters}: after {cfg.inner_steps} steps loss "
                  f"{h['loss']:.3f} acc {h['accuracy']:.3f} solved {h['solved']}/{h['rows']} | "
                  f"|e0| {h['norm_e0']:.1f} |m0| {h['norm_m0']:.1f} | {time.time() - t0:.0f}s",
                  file=sys.stderr, flush=True)
        try:
            _, _, history = learn_start(lm, recipe, batches, cfg.inner_steps, cfg.eps,
                                        cfg.seed, start=init, progress=progress)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        atomic_write_json(Path(f"{stem}.history.json"), history)
        fig = plot(history, Path(f"{stem}.png"))
        mr.figure(fig, "meta_start.png")
        mr.artifact(out)
    C.print_summary({"out": str(out), "iters": cfg.iters, "seconds": round(time.time() - t0, 1),
                     "first": history[0], "last": history[-1]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
