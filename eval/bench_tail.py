"""Tail restarts benchmark: the fitter without tail restarts vs the same fitter filling idle
rows with extra seeds of straggling texts (the default of proto.fit and data_gen.build), side
by side.

  python -m eval.bench_tail                                      # 32 texts, SmolLM2, ~12 min here
  python -m eval.bench_tail texts_file=configs/eval/sentences.txt   # 32 sentences of 15-20 tokens
  python -m eval.bench_tail "tail_after=[0,1.5]"                 # back up at once vs stragglers
  python -m eval.bench_tail n_texts=128 batch_size=32            # a longer stream
  python -m eval.bench_tail init_from=default                    # start at the encoder's e
  python -m eval.bench_tail model=tiny-random n_texts=6 batch_size=4 n_tokens=6 cap=60 \\
      recipe_overrides.lr=0.05 out=outputs/eval/bench_tail-tiny   # tiny CPU run, seconds

A small fitting job is decided by its slowest texts: once no row waits, the batch shrinks to a
few unsolved texts. Every arm fits the same texts with the same recipe, seeds and batch size;
the first has no tail restarts, the others (`Fitter(tail_restarts=k, tail_after=a)`, one arm per
value of `tail_after`) fill idle rows with up to k extra restarts of each straggler (a text
whose row has run a x the median solved steps; a = 0: every unsolved text at once), the first
of its rows to solve being its result. Rows are independent, so every text's own row follows
the same path in every arm: a tail arm can only solve a text sooner in steps, and pays for it
in the cost of fuller batches. `texts_file` takes the first n_texts lines of a file (each at
its own length) instead of n_tokens-token windows of `source`. Reported per arm: texts
solved, wall seconds, texts solved per hour, median steps (a text won by a tail row counts
that row's steps), row-steps run; the ratio tail / no tail of texts per hour for each tail arm. `init_from` (an encoder checkpoint or
'default') starts every row's first attempt at the encoder's e (the `refine` recipe), with m
frozen at the encoder's m, as `proto.fit --init-from` does. Writes
out/{config.yaml,results.json,table.md,bench_tail.png}; logs to MLflow (experiment `eval`);
the last stdout line is JSON.
"""
from __future__ import annotations

import dataclasses
import statistics
import sys
import time

from encoder.refine import encoded_starts
from eval import common as E
from proto import config as C
from proto.fit import FitRow, Fitter, start_rows_at
from proto.io import read_texts
from proto.models import ModelFields, load_model
from proto.progress import FitProgress
from proto.report import md_table
from proto.sources import sample_texts


@dataclasses.dataclass
class TailConfig(ModelFields):
    source: str = "britannica"
    texts_file: str = ""      # one text per line: its first n_texts lines instead of `source`
    n_texts: int = 32
    n_tokens: int = 16
    batch_size: int = 32
    recipe: str = "default"
    recipe_overrides: dict = dataclasses.field(default_factory=dict)
    cap: int = 300
    tail_restarts: int = 3
    tail_after: list[float] = dataclasses.field(default_factory=lambda: [1.5])
    init_from: str = ""       # encoder checkpoint or 'default': rows start at the encoder's e
    seed: int = 0
    threads: int = 0
    progress_seconds: float = 30.0
    out: str = "outputs/eval/bench_tail"
    mlflow: bool = True

    def __post_init__(self):
        if min(self.n_texts, self.n_tokens, self.batch_size, self.cap, self.tail_restarts) < 1:
            raise ValueError("n_texts, n_tokens, batch_size, cap and tail_restarts must be >= 1")
        if not self.tail_after or min(self.tail_after) < 0:
            raise ValueError("tail_after must be a non-empty list of values >= 0")
        E.check_recipe(self.recipe, self.recipe_overrides, self.cap)


def _fitter(cfg, lm, tail: int, after: float, starts):
    recipe = E.resolve_recipe(cfg.recipe, cfg.recipe_overrides, cfg.cap)
    f = Fitter(lm, recipe, batch_size=cfg.batch_size, seed=cfg.seed, tail_restarts=tail,
               tail_after=after)
    if starts is not None:
        e = starts[0]
        start_rows_at(f, lambda row: e[int(row.key)])
    return f


def arm(cfg, lm, rows, tail: int, after: float, starts) -> dict:
    """One fit of all rows; its results and a (seconds, solved, active) trace."""
    name = f"tail_restarts={tail}" + (f", tail_after={after:g}" if tail else "")
    trace, say = [], FitProgress(desc=name, every=cfg.progress_seconds)

    def progress(p):
        trace.append((p["seconds"], p["solved"], p["active"]))
        say(p)

    kw = {} if starts is None else {"m_mode": "frozen", "m": starts[1]}
    t0 = time.perf_counter()
    res = _fitter(cfg, lm, tail, after, starts).fit(rows, progress=progress, **kw)
    secs = time.perf_counter() - t0
    solved = sum(r.solved for r in res)
    steps = [r.steps if r.solved else cfg.cap for r in res]
    return {"arm": name, "tail_restarts": tail, "tail_after": after, "solved": solved,
            "texts": len(rows), "seconds": secs,
            "texts_per_hour": 3600 * solved / secs, "steps_median": statistics.median(steps),
            "steps_max": max(steps), "row_steps": sum(a for _, _, a in trace),
            "forward_passes": len(trace), "won_by_tail_row": sum(r.restart >= 1000 for r in res),
            "trace": trace}


def bench(cfg: TailConfig, log=E.stderr_log) -> dict:
    lm = load_model(cfg.model, device=cfg.device or None, dtype=cfg.dtype)
    try:  # the texts file and the encoder are input: ValueError is bad input here
        if cfg.texts_file:
            texts = [lm.tokenize(t) for t in read_texts([], cfg.texts_file)][: cfg.n_texts]
        else:
            texts = [ids for _, ids in sample_texts(lm.tokenize, cfg.source, cfg.n_tokens,
                                                    cfg.n_texts, seed=cfg.seed)]
        E.check_fits(lm, E.resolve_recipe(cfg.recipe, cfg.recipe_overrides, cfg.cap),
                     max(map(len, texts)))
        starts = encoded_starts(cfg.init_from, lm, texts)[:2] if cfg.init_from else None
    except ValueError as exc:
        raise C.ConfigError(str(exc)) from None
    rows = [FitRow(ids, str(i)) for i, ids in enumerate(texts)]
    lo, hi = min(map(len, texts)), max(map(len, texts))
    size = f"{lo}-{hi}" if lo != hi else str(lo)   # a texts_file's lines keep their lengths
    arms = []
    for tail, after in [(0, 0.0)] + [(cfg.tail_restarts, a) for a in cfg.tail_after]:
        log(f"arm tail_restarts={tail}, tail_after={after:g}: {len(rows)} texts of "
            f"{size} tokens, batch {cfg.batch_size}, cap {cfg.cap} ...")
        arms.append(arm(cfg, lm, rows, tail, after, starts))
        a = arms[-1]
        log(f"  {a['solved']}/{a['texts']} solved in {a['seconds']:.0f} s "
            f"({a['texts_per_hour']:.0f} texts/h), median {a['steps_median']:g} steps")
    base = arms[0]["texts_per_hour"]
    for a in arms[1:]:
        a["speedup_texts_per_hour"] = a["texts_per_hour"] / base if base else float("inf")
    return {"model": lm.identity, "device": str(lm.device), "texts": len(rows),
            "n_tokens": cfg.n_tokens, "tokens": size, "arms": arms,
            "speedup_texts_per_hour": max(a["speedup_texts_per_hour"] for a in arms[1:]),
            "config": C.to_dict(cfg)}


def plot(rep: dict):
    import matplotlib.pyplot as plt  # lazy: matplotlib (~1 s) is needed only to draw plots
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    for a, color in zip(rep["arms"], ("tab:blue", "tab:orange", "tab:green", "tab:red",
                                      "tab:purple")):
        t, s, act = zip(*a["trace"]) if a["trace"] else ((), (), ())
        label = f"{a['arm']} ({a['seconds']:.0f} s)"
        a1.step(t, s, where="post", color=color, label=label)
        a2.step(t, act, where="post", color=color, label=label)
    a1.set_xlabel("seconds")
    a1.set_ylabel("texts solved")
    a1.legend(fontsize=8)
    a2.set_xlabel("seconds")
    a2.set_ylabel("rows in the batch")
    fig.suptitle(f"{rep['texts']} texts of {rep['tokens']} tokens, {rep['model']['name']}: "
                 f"up to x{rep['speedup_texts_per_hour']:.2f} texts/h with tail restarts",
                 fontsize=10)
    fig.tight_layout()
    return fig


def report(rep: dict) -> str:
    rows = [[a["arm"], f"{a['solved']}/{a['texts']}", f"{a['seconds']:.0f}",
             f"{a['texts_per_hour']:.0f}", f"x{a.get('speedup_texts_per_hour', 1.0):.2f}",
             f"{a['steps_median']:g}", a["steps_max"], a["row_steps"], a["won_by_tail_row"]]
            for a in rep["arms"]]
    return md_table(["arm", "solved", "seconds", "texts/h", "vs none", "median steps",
                       "max steps", "row-steps", "won by a tail row"], rows)


def _flat(rep: dict) -> dict:
    """Per-arm numbers keyed none / after<tail_after> (the JSON line and MLflow metrics)."""
    tags = ["none"] + [f"after{a['tail_after']:g}" for a in rep["arms"][1:]]
    return {f"{k}_{tag}": round(a[k], 3) for tag, a in zip(tags, rep["arms"])
            for k in ("solved", "seconds", "texts_per_hour", "steps_median",
                      "speedup_texts_per_hour") if k in a}


def summary(rep: dict) -> dict:
    return {"speedup_texts_per_hour": round(rep["speedup_texts_per_hour"], 3), **_flat(rep)}


def main(argv=None) -> int:
    return E.table_main(TailConfig, __doc__, argv, "bench_tail", bench, report, plot, summary,
                        lambda rep: {f"tail/{k}": v for k, v in _flat(rep).items()})


if __name__ == "__main__":
    sys.exit(main())
