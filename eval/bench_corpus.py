"""Corpus-build benchmark: the same corpus built from several starts, side by side in one run.

  python -m eval.bench_corpus                                 # 64 texts x 4 arms, SmolLM2, ~10 min
  python -m eval.bench_corpus "build.sources=[{name: britannica, count: 256, lengths: [8]}]"
  python -m eval.bench_corpus build_config=configs/data_gen/encoder.yaml   # the whole corpus
  python -m eval.bench_corpus "arms=[{name: start}, {name: encoder, init_from: outputs/encoder/default}]"
  python -m eval.bench_corpus build_config=configs/data_gen/tiny.yaml \\
      "arms=[{name: a}, {name: b, tail_restarts: 2}]" out=outputs/eval/bench_corpus-tiny
      # tiny CPU run, seconds

Does the encoder make corpus building faster? Every arm is one `data_gen.build` of the same
texts (`build_config`, then `build`'s overrides, then the arm's own BuildConfig fields) into
out/corpora/ARM, started fresh, one after the other in this process on one loaded model. The
default (configs/data_gen/speedup.yaml) is the encoder corpus's recipe (m frozen at the learned
start's m0, each e fitted from e0) on 48 windows of Shakespeare's plays + 16 random-word texts
of 8 tokens that the shipped encoder never trained on, one row per text and no Bezier checks.
Its arms build them from the learned start (`start`), with tail restarts (`start+tail`), from
the shipped encoder's e (`encoder`, `init_from: default`: each text's first attempt refines the
encoder's e with the `refine` recipe, then falls back to e0 and the corpus recipe) and both
(`encoder+tail`, whose tail restarts start from e0). Reported per arm: texts solved, build seconds (the encoder's
pass included), solved texts per hour and its ratio to the first arm; median / max steps, the
fitting steps of all texts and their ratio (first arm / this arm), a speed-up that other jobs
on the machine cannot skew. Writes out/{config.yaml,results.json,table.md,bench_corpus.png};
logs to MLflow (experiment `eval`); the last stdout line is JSON.
"""
from __future__ import annotations

import dataclasses
import shutil
import statistics
import sys
from pathlib import Path

from data_gen.build import BuildConfig, build
from eval import common as E
from proto import config as C
from proto.models import load_model
from proto.report import md_table
from proto.tracking import metric_key

SHARED = ("model", "device", "dtype", "sources", "seed")   # BuildConfig fields of every arm
# data_gen.build backs up stragglers with tail restarts by default; the plain arms turn them off
DEFAULT_ARMS = [{"name": "start", "tail_restarts": 0}, {"name": "start+tail"},
                {"name": "encoder", "init_from": "default", "tail_restarts": 0},
                {"name": "encoder+tail", "init_from": "default"}]


@dataclasses.dataclass
class CorpusBenchConfig:
    build_config: str = "configs/data_gen/speedup.yaml"   # the BuildConfig every arm starts from
    build: dict = dataclasses.field(default_factory=dict)  # BuildConfig fields for every arm
    # each arm: a name and the BuildConfig fields it changes (init_from, tail_restarts, ...)
    arms: list[dict] = dataclasses.field(default_factory=lambda: [dict(a) for a in DEFAULT_ARMS])
    threads: int = 0
    out: str = "outputs/eval/bench_corpus"
    mlflow: bool = True

    def __post_init__(self):
        if len(self.arms) < 2:
            raise ValueError("arms needs at least two arms to compare")
        names = [a.get("name") for a in self.arms]
        if not all(isinstance(n, str) and n and "/" not in n for n in names):
            raise ValueError("every arm needs a name (no '/')")
        if len(set(names)) != len(names):
            raise ValueError(f"arm names repeat: {names}")
        if {"out", "mlflow"} & set(self.build) or any({"out", "mlflow"} & set(a)
                                                       for a in self.arms):
            raise ValueError("out and mlflow are set by the benchmark, not per arm or build")
        # every arm's BuildConfig is valid before anything runs, and the arms share one
        # loaded model and build the same texts
        built = [C.to_dict(arm_config(self, a)) for a in self.arms]
        for key in SHARED:
            if any(b[key] != built[0][key] for b in built):
                raise ValueError(f"arms must share {key} (one loaded model, the same texts); "
                                 f"set it in build, not per arm")


def arm_config(cfg: CorpusBenchConfig, arm: dict):
    data = C.deep_merge(C.read_yaml(cfg.build_config), cfg.build)
    data = C.deep_merge(data, {k: v for k, v in arm.items() if k != "name"})
    data.update(out=str(Path(cfg.out) / "corpora" / arm["name"]), mlflow=False,
                threads=cfg.threads)
    return C.from_dict(BuildConfig, data, where=f"arm {arm['name']}")


def run_arm(cfg: CorpusBenchConfig, arm: dict, lm, log) -> dict:
    bcfg = arm_config(cfg, arm)
    if Path(bcfg.out).exists():   # a resumed build would skip its fitted chunks: start fresh
        shutil.rmtree(bcfg.out)
    log(f"arm {arm['name']}: building {bcfg.out} ...")
    s = build(bcfg, lm=lm)
    stats = s.pop("_tables")[0]
    steps_all = stats.column("steps").to_pylist()
    solved_steps = sorted(st for st, ok in zip(steps_all, stats.column("solved").to_pylist())
                          if ok)
    res = {"arm": arm["name"], "changes": {k: v for k, v in arm.items() if k != "name"},
           "texts": s["texts"], "solved": s["solved"], "seconds": s["seconds"],
           "chunk_seconds": s["chunk_seconds"],
           "texts_per_hour": 3600 * s["solved"] / s["seconds"] if s["seconds"] else 0.0,
           "steps_total": sum(steps_all),
           "steps_median": statistics.median(solved_steps) if solved_steps else None,
           "steps_max": max(solved_steps) if solved_steps else None,
           "solved_steps": solved_steps, "corpus": bcfg.out}
    log(f"  {res['solved']}/{res['texts']} solved in {res['seconds']:.0f} s "
        f"({res['texts_per_hour']:.0f} texts/h), median {res['steps_median']} steps")
    return res


def study(cfg: CorpusBenchConfig, log=E.stderr_log) -> dict:
    first = arm_config(cfg, cfg.arms[0])
    lm = load_model(first.model, device=first.device or None, dtype=first.dtype)
    arms = [run_arm(cfg, a, lm, log) for a in cfg.arms]
    base, base_steps = arms[0]["texts_per_hour"], arms[0]["steps_total"]
    for a in arms:
        a["speedup_texts_per_hour"] = a["texts_per_hour"] / base if base else float("inf")
        # the same ratio in fitting steps, which other jobs on the machine cannot skew
        a["speedup_steps"] = base_steps / a["steps_total"] if a["steps_total"] else float("inf")
    return {"model": lm.identity, "device": str(lm.device), "arms": arms,
            "config": C.to_dict(cfg)}


def plot(rep: dict):
    import matplotlib.pyplot as plt  # lazy: matplotlib (~1 s) is needed only to draw plots
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    arms = rep["arms"]
    a1.bar([a["arm"] for a in arms], [a["texts_per_hour"] for a in arms], color="tab:blue")
    for i, a in enumerate(arms):
        a1.text(i, a["texts_per_hour"], f"x{a['speedup_texts_per_hour']:.2f}", ha="center",
                va="bottom", fontsize=8)
    a1.set_ylabel("solved texts per hour")
    a1.tick_params(axis="x", labelsize=8)
    for a in arms:
        xs = a["solved_steps"]
        a2.step(xs, [(i + 1) / a["texts"] for i in range(len(xs))], where="post",
                label=f"{a['arm']} ({a['solved']}/{a['texts']})")
    a2.set_xlabel("steps to solve")
    a2.set_ylabel("fraction of texts solved")
    a2.legend(fontsize=8)
    fig.suptitle(f"corpus build, {rep['model']['name']}: {arms[0]['texts']} texts per arm",
                 fontsize=10)
    fig.tight_layout()
    return fig


def table(rep: dict) -> str:
    rows = [[a["arm"], ", ".join(f"{k}={v}" for k, v in a["changes"].items()) or "-",
             f"{a['solved']}/{a['texts']}", f"{a['seconds']:.0f}", f"{a['texts_per_hour']:.0f}",
             f"x{a['speedup_texts_per_hour']:.2f}", a["steps_median"], a["steps_max"],
             a["steps_total"], f"x{a['speedup_steps']:.2f}"]
            for a in rep["arms"]]
    first = rep["arms"][0]["arm"]
    return md_table(["arm", "changes", "solved", "seconds", "solved texts/h", f"vs {first}",
                       "median steps", "max steps", "steps, all texts", f"vs {first}"], rows)


def _flat(rep: dict) -> dict:
    return {f"{metric_key(a['arm'])}/{k}": round(a[k], 3) for a in rep["arms"]
            for k in ("solved", "seconds", "texts_per_hour", "speedup_texts_per_hour",
                      "steps_total", "speedup_steps")}


def summary(rep: dict) -> dict:
    return _flat(rep)


def main(argv=None) -> int:
    return E.table_main(CorpusBenchConfig, __doc__, argv, "bench_corpus", study, table, plot,
                        summary, lambda rep: {f"corpus/{k}": v for k, v in _flat(rep).items()})


if __name__ == "__main__":
    sys.exit(main())
