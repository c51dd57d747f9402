"""Tail restarts benchmark: today's fitter vs the same fitter filling idle rows, side by side.

  python -m eval.bench_tail                                      # 32 texts, SmolLM2, ~15 min here
  python -m eval.bench_tail n_texts=128 batch_size=32            # a longer stream
  python -m eval.bench_tail init_from=default                    # start at the encoder's e
  python -m eval.bench_tail model=tiny-random n_texts=6 batch_size=4 n_tokens=6 cap=60 \
      recipe_overrides.lr=0.05 out=outputs/eval/bench_tail-tiny   # tiny CPU run, seconds

A small fitting job is decided by its slowest texts: once no row waits, the batch shrinks to a
few unsolved texts. Both arms fit the same texts with the same recipe, seeds and batch size;
the second (`Fitter(tail_restarts=k)`) fills the idle rows with up to k extra restarts of each
unsolved text, the first of its rows to solve being its result. Rows are independent, so every
text's own row follows the same path in both arms: the tail arm can only solve a text sooner
in steps, and pays for it in the cost of fuller batches. Reported per arm: texts solved, wall
seconds, texts solved per hour, median steps, row-steps run; the ratio tail / today of texts
per hour. `init_from` (an encoder checkpoint or 'default') starts every row at the encoder's e
plus refinement noise, with m frozen at the encoder's m, as `proto.fit --init-from` does.
Writes out/{config.yaml,results.json,progress.png}; logs to MLflow (experiment `eval`); the
last stdout line is JSON.
"""
from __future__ import annotations

import dataclasses
import statistics
import sys
import time
from pathlib import Path

from eval import common as E
from proto import config as C
from proto.models import DEFAULT_MODEL


@dataclasses.dataclass
class TailConfig:
    model: str = DEFAULT_MODEL
    device: str = ""
    dtype: str = "auto"
    source: str = "britannica"
    n_texts: int = 32
    n_tokens: int = 16
    batch_size: int = 32
    recipe: str = "default"
    recipe_overrides: dict = dataclasses.field(default_factory=dict)
    cap: int = 300
    tail_restarts: int = 3
    init_from: str = ""       # encoder checkpoint or 'default': rows start at the encoder's e
    seed: int = 0
    threads: int = 0
    progress_seconds: float = 30.0
    out: str = "outputs/eval/bench_tail"
    mlflow: bool = True

    def __post_init__(self):
        if min(self.n_texts, self.n_tokens, self.batch_size, self.cap, self.tail_restarts) < 1:
            raise ValueError("n_texts, n_tokens, batch_size, cap and tail_restarts must be >= 1")
        E.check_recipe(self.recipe, self.recipe_overrides, self.cap)


def _fitter(cfg, lm, tail: int, starts):
    from proto.fit import Fitter
    recipe = E.resolve_recipe(cfg.recipe, cfg.recipe_overrides, cfg.cap)
    f = Fitter(lm, recipe, batch_size=cfg.batch_size, seed=cfg.seed, tail_restarts=tail)
    if starts is not None:
        from encoder.refine import use_starts
        e = starts[0]
        use_starts(f, lambda row: e[int(row.key)], cfg.recipe_overrides)
    return f


def arm(cfg, lm, rows, tail: int, starts, log) -> dict:
    """One fit of all rows; its results and a (seconds, solved, active) trace."""
    trace, say = [], E.progress_printer(log, f"tail_restarts={tail}", cfg.progress_seconds)

    def progress(p):
        trace.append((p["seconds"], p["solved"], p["active"]))
        say(p)

    kw = {} if starts is None else {"m_mode": "frozen", "m": starts[1]}
    t0 = time.perf_counter()
    res = _fitter(cfg, lm, tail, starts).fit(rows, progress=progress, **kw)
    secs = time.perf_counter() - t0
    solved = sum(r.solved for r in res)
    steps = [r.steps if r.solved else cfg.cap for r in res]
    return {"tail_restarts": tail, "solved": solved, "texts": len(rows), "seconds": secs,
            "texts_per_hour": 3600 * solved / secs, "steps_median": statistics.median(steps),
            "steps_max": max(steps), "row_steps": sum(a for _, _, a in trace),
            "forward_passes": len(trace), "won_by_tail_row": sum(r.restart >= 1000 for r in res),
            "trace": trace}


def bench(cfg: TailConfig, log=E.stderr_log) -> dict:
    from data_gen.sources import sample_texts
    from proto.fit import FitRow
    from proto.models import load_model
    lm = load_model(cfg.model, device=cfg.device or None, dtype=cfg.dtype)
    texts = [ids for _, ids in sample_texts(lm.tokenize, cfg.source, cfg.n_tokens, cfg.n_texts,
                                            seed=cfg.seed)]
    rows = [FitRow(ids, str(i)) for i, ids in enumerate(texts)]
    starts = None
    if cfg.init_from:
        from encoder.refine import encoded_starts
        e, m, _ = encoded_starts(cfg.init_from, lm, texts)
        starts = (e, m)
    arms = []
    for tail in (0, cfg.tail_restarts):
        log(f"arm tail_restarts={tail}: {len(rows)} texts of {cfg.n_tokens} tokens, batch "
            f"{cfg.batch_size}, cap {cfg.cap} ...")
        arms.append(arm(cfg, lm, rows, tail, starts, log))
        a = arms[-1]
        log(f"  {a['solved']}/{a['texts']} solved in {a['seconds']:.0f} s "
            f"({a['texts_per_hour']:.0f} texts/h), median {a['steps_median']:g} steps")
    today, tail = arms
    return {"model": lm.identity, "device": str(lm.device), "texts": len(rows),
            "n_tokens": cfg.n_tokens, "arms": arms,
            "speedup_texts_per_hour": (tail["texts_per_hour"] / today["texts_per_hour"]
                                       if today["texts_per_hour"] else float("inf")),
            "config": C.to_dict(cfg)}


def plot(rep: dict):
    import matplotlib.pyplot as plt
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    for a, color in zip(rep["arms"], ("tab:blue", "tab:orange")):
        t, s, act = zip(*a["trace"]) if a["trace"] else ((), (), ())
        label = f"tail_restarts={a['tail_restarts']} ({a['seconds']:.0f} s)"
        a1.step(t, s, where="post", color=color, label=label)
        a2.step(t, act, where="post", color=color, label=label)
    a1.set_xlabel("seconds")
    a1.set_ylabel("texts solved")
    a1.legend(fontsize=8)
    a2.set_xlabel("seconds")
    a2.set_ylabel("rows in the batch")
    fig.suptitle(f"{rep['texts']} texts of {rep['n_tokens']} tokens, {rep['model']['name']}: "
                 f"x{rep['speedup_texts_per_hour']:.2f} texts/h with tail restarts", fontsize=10)
    fig.tight_layout()
    return fig


def report(rep: dict) -> str:
    rows = [[a["tail_restarts"], f"{a['solved']}/{a['texts']}", f"{a['seconds']:.0f}",
             f"{a['texts_per_hour']:.0f}", f"{a['steps_median']:g}", a["steps_max"],
             a["row_steps"], a["won_by_tail_row"]] for a in rep["arms"]]
    return E.md_table(["tail restarts", "solved", "seconds", "texts/h", "median steps",
                       "max steps", "row-steps", "won by a tail row"], rows) + (
        f"\n\ntexts per hour, tail / today: x{rep['speedup_texts_per_hour']:.2f}")


def main(argv=None) -> int:
    def body(cfg, mr):
        from proto.io import atomic_write_bytes, atomic_write_json
        out = Path(cfg.out)
        with E.torch_threads(cfg.threads):
            rep = bench(cfg)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(out / "config.yaml", C.dump_yaml(cfg).encode())
        atomic_write_json(out / "results.json", rep)
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig = plot(rep)
        E.save_figure(fig, out / "progress.png")
        mr.figure(fig, "progress.png")
        plt.close(fig)
        mr.metrics({f"tail/{k}": a[k] for a, k in
                    ((rep["arms"][1], "texts_per_hour"), (rep["arms"][1], "seconds"))}
                   | {"tail/today_texts_per_hour": rep["arms"][0]["texts_per_hour"],
                      "tail/speedup_texts_per_hour": rep["speedup_texts_per_hour"]})
        mr.artifact(out / "results.json")
        summary = {"out": str(out), "speedup_texts_per_hour": round(rep["speedup_texts_per_hour"], 3)}
        summary |= {f"{k}_{a['tail_restarts']}": round(a[k], 1) for a in rep["arms"]
                    for k in ("solved", "seconds", "texts_per_hour", "steps_median")}
        return report(rep), summary

    return E.run_command(TailConfig, __doc__, argv, "bench_tail", body, errors=E.table_errors,
                         preflight=E.check_out_dir)


if __name__ == "__main__":
    sys.exit(main())
