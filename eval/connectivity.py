"""Connectivity of same-text solutions: linear vs quadratic Bezier paths (paper Sec. 4, Fig. 6).

  python -m eval.connectivity --corpus outputs/corpus/default          # the build's pairs/
  python -m eval.connectivity --corpus C compute=20                    # + 20 pairs with profiles
  python -m eval.connectivity --corpus C compute=5 bezier_steps=200 device=cuda
  # tiny CPU run (~20 s): build the tiny corpus, then study its pairs and compute one more
  python -m data_gen.build --config configs/data_gen/tiny.yaml out=outputs/corpus/tiny threads=1
  python -m eval.connectivity --corpus outputs/corpus/tiny compute=1 threads=1

Inputs: the corpus's pairs/ shards (written by data_gen.build: per pair of solved restarts of
one text, the min and mean accuracy along the linear path and along a trained Bezier curve,
the curve's length ratio and the cosine distance of the two e's). With compute=N it also
checks N more pairs of solved restarts from the shards, in the corpus's own model,
arrangement, prefix and shared m (proto.paths, as data_gen.build does) and keeps the accuracy
at every t of the grid, so the plot shows accuracy along t. Pairs not in pairs/ come first;
when the corpus has fewer such pairs, already-checked ones are re-measured (counted once in
the totals, profiles still plotted).
Path settings (bezier_steps, bezier_samples, bezier_lr, path_grid) default to the corpus
build's own; bezier_lr is relative to the pair's distance. Reported: linear vs Bezier min/mean
accuracy along the path, the pairs whose path stays fully solved (accuracy 1 at every t of the
grid; for Bezier also among those whose linear path fails), length ratio and cosine distance
stats, beside the paper's claims; for computed pairs the control point's loss curve and why
its training stopped (proto.paths.bezier: solved on the grid, converged, or the step cap).
Outputs in `out` (default outputs/eval/connectivity/<corpus name>/): results.json, table.md,
config.yaml, min_accuracy.png, and with compute profile.png and control_loss.png; MLflow
experiment `eval`, run connectivity-<corpus name>. Last stdout line: one JSON summary.
Bad input (missing or non-corpus directory, unfinished corpus without allow_partial=true, no
solved rows, a model that is not the corpus's) ends with one `error:` line and exit 2.
"""
from __future__ import annotations

import dataclasses
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch

from data_gen import corpus as K, textdist as T
from data_gen.build import BuildConfig
from proto import config as C
from proto.arrangement import Arrangement
from proto.io import atomic_write_bytes, atomic_write_json
from proto.models import ModelLoadError, load_model
from proto.paths import as_point, bezier, linear

from . import common as E
from .locality import (
    CORPUS_FLAG,
    _plt,
    corpus_run_name,
    default_out,
    fmt,
    open_corpus,
    read_kind,
    save_figure,
)

SOLVED = 1.0 - 1e-6  # min accuracy counted as "path fully solved" (float32 storage)
PAIR_COLS = [f.name for f in K.PAIR_SCHEMA]


@dataclasses.dataclass
class ConnectivityConfig:
    corpus: str = ""                   # corpus directory (also --corpus)
    out: str = ""                      # '' = outputs/eval/connectivity/<corpus name>
    allow_partial: bool = False
    compute: int = 0                   # extra pairs to check, with per-t profiles
    device: str = ""                   # '' = cuda if available, else cpu
    dtype: str = ""                    # '' = the corpus's precision
    bezier_steps: int | None = None    # None = as in the corpus build
    bezier_samples: int | None = None
    bezier_lr: float | None = None
    path_grid: int | None = None
    seed: int = 0
    threads: int = 0                   # torch CPU threads (0 = torch's default)
    mlflow: bool = True

    def __post_init__(self):
        if self.compute < 0:
            raise ValueError("compute must be >= 0")
        if self.threads < 0:
            raise ValueError("threads must be >= 0")
        for name, lo in (("bezier_steps", 0), ("bezier_samples", 1), ("path_grid", 2)):
            v = getattr(self, name)
            if v is not None and v < lo:
                raise ValueError(f"{name} must be >= {lo}")
        if self.bezier_lr is not None and self.bezier_lr <= 0:
            raise ValueError("bezier_lr must be > 0")


def path_settings(cfg: ConnectivityConfig, man: dict) -> dict:
    """The path settings in force: this config's, else the corpus build's, else the builder's."""
    built = man.get("config", {})
    out = {}
    for name in ("bezier_steps", "bezier_samples", "bezier_lr", "path_grid"):
        v = getattr(cfg, name)
        out[name] = v if v is not None else built.get(name, getattr(BuildConfig, name))
    return out


# ---------------------------------------------------------------- new pairs

def compute_pairs(cfg: ConnectivityConfig, root: Path, man: dict, stored_keys: set,
                  lm=None, log=print) -> list[dict]:
    """Check `cfg.compute` pairs of solved restarts, keeping the accuracy at each t."""

    # pick from the small columns first; e and token ids are read for the picked rows only
    tab = read_kind(root, man, K.SHARDS, ["text_id", "restart", "solved"])
    by_text: dict[str, list[dict]] = {}
    for i, r in enumerate(tab.to_pylist()):
        if r["solved"]:
            by_text.setdefault(r["text_id"], []).append({**r, "row": i})
    cands = []
    for rs in by_text.values():
        rs = sorted(rs, key=lambda r: r["restart"])
        cands += [(a, b) for i, a in enumerate(rs) for b in rs[i + 1:]]
    rng = random.Random(f"{cfg.seed}|connectivity")
    rng.shuffle(cands)
    key = lambda ab: (ab[0]["text_id"], ab[0]["restart"], ab[1]["restart"])  # noqa: E731
    cands = ([c for c in cands if key(c) not in stored_keys]
             + [c for c in cands if key(c) in stored_keys])
    pick = cands[:cfg.compute]
    if not pick:
        log("connectivity: no text has 2 solved restarts; nothing to compute")
        return []
    rows = sorted({x["row"] for ab in pick for x in ab})
    full = read_kind(root, man, K.SHARDS, ["text_id", "restart", "token_ids", "e"])
    data = dict(zip(rows, full.take(rows).to_pylist()))
    for ab in pick:
        for x in ab:
            got = data[x["row"]]
            # an unfinished build can add shards between the two reads
            if (got["text_id"], got["restart"]) != (x["text_id"], x["restart"]):
                raise K.CorpusError(f"corpus {root} changed while it was read; run again")
            x.update(got)
    if len(pick) < cfg.compute:
        log(f"connectivity: only {len(pick)} pairs of solved restarts exist (asked {cfg.compute})")
    if lm is None:
        lm = load_model(man["model"]["name"], device=cfg.device or None, dtype=cfg.dtype,
                        record=man.get("precision"), what=f"corpus {root}")
    want = man.get("model", {}).get("weights_sha256")
    if want and lm.weights_sha256 != want:
        raise K.CorpusError(f"model {lm.name} has weights {lm.weights_sha256[:12]}, the corpus "
                            f"was built with {want[:12]}: its e's are not solutions for it")
    arr = Arrangement.from_dict(man["arrangement"])
    m = K.load_m(root)[0].float() if arr.uses_m else None
    ps = path_settings(cfg, man)
    out = []
    for k, (a, b) in enumerate(pick):
        t0 = time.time()
        ea, eb = torch.tensor(a["e"]), torch.tensor(b["e"])
        p1, p2 = as_point(ea, m), as_point(eb, m)
        lin = linear(lm, arr, a["token_ids"], p1, p2, grid=ps["path_grid"])
        bez = bezier(lm, arr, a["token_ids"], p1, p2, steps=ps["bezier_steps"],
                     samples=ps["bezier_samples"], lr=ps["bezier_lr"], grid=ps["path_grid"],
                     seed=cfg.seed * 1_000_003 + k)
        cos = float(torch.nn.functional.cosine_similarity(ea, eb, dim=0))
        out.append({"text_id": a["text_id"], "restart_a": a["restart"],
                    "restart_b": b["restart"], "cosine_distance": 1.0 - cos,
                    "linear_min_acc": lin.min_accuracy, "linear_mean_acc": lin.mean_accuracy,
                    "bezier_min_acc": bez.min_accuracy, "bezier_mean_acc": bez.mean_accuracy,
                    "length_ratio": bez.length_ratio, "in_pairs": key((a, b)) in stored_keys,
                    "t": lin.t, "linear_acc": lin.accuracy, "bezier_acc": bez.accuracy,
                    "bezier_steps_run": bez.steps, "bezier_stop": bez.stop,
                    "bezier_history": bez.history,
                    "n_tokens": len(a["token_ids"]), "seconds": time.time() - t0})
        log(f"pair {k + 1}/{len(pick)}: linear min {lin.min_accuracy:.3f}, Bezier min "
            f"{bez.min_accuracy:.3f} ({bez.stop} after {bez.steps} steps), length ratio "
            f"{bez.length_ratio:.3f} ({time.time() - t0:.1f} s)")
    return out


# ---------------------------------------------------------------- statistics

def pair_stats(rows: list[dict]) -> dict:
    """Linear vs Bezier summaries over pair records (keys of PAIR_SCHEMA)."""
    def col(c):
        return np.asarray([r[c] for r in rows], dtype=np.float64)

    def mm(v):
        return ({"mean": float(v.mean()), "median": float(np.median(v))} if len(v)
                else {"mean": None, "median": None})
    out = {"pairs": len(rows)}
    for path in ("linear", "bezier"):
        mn, me = col(f"{path}_min_acc"), col(f"{path}_mean_acc")
        out[path] = {"min_acc": mm(mn), "mean_acc": mm(me), "solved": int((mn >= SOLVED).sum()),
                     "solved_path_frac": float((mn >= SOLVED).mean()) if len(mn) else None}
    lin_fails = col("linear_min_acc") < SOLVED
    out["linear_fails"] = int(lin_fails.sum())
    out["bezier_solved_where_linear_fails"] = int(
        (lin_fails & (col("bezier_min_acc") >= SOLVED)).sum())
    lr = col("length_ratio")
    out["length_ratio"] = {**T.summary(lr), "max": float(lr.max()) if len(lr) else None}
    out["cosine_distance"] = T.summary(col("cosine_distance"))
    return out


# ---------------------------------------------------------------- the study

def study(cfg: ConnectivityConfig, mr=None, lm=None, log=None) -> dict:
    log = log or (lambda *a: print(*a, file=sys.stderr, flush=True))
    t0 = time.time()
    man = open_corpus(cfg.corpus, cfg.allow_partial)
    root = Path(cfg.corpus)
    out = Path(cfg.out) if cfg.out else default_out("connectivity", cfg.corpus)
    solved = read_kind(root, man, K.SHARDS, ["solved"]).column("solved").to_pylist()
    if not solved:
        raise K.CorpusError(f"corpus {root} has no rows")
    if not any(solved):
        raise K.CorpusError(f"corpus {root} has no solved rows ({len(solved)} rows, none at "
                            f"accuracy 1.0): there are no solutions to connect")
    stored = read_kind(root, man, K.PAIRS, PAIR_COLS).to_pylist()
    keys = {(r["text_id"], r["restart_a"], r["restart_b"]) for r in stored}
    computed = []
    if cfg.compute:
        with E.torch_threads(cfg.threads):
            computed = compute_pairs(cfg, root, man, keys, lm, log)
    merged = stored + [r for r in computed if not r["in_pairs"]]
    res = {"corpus": str(root), "corpus_status": man.get("status"), "model": man.get("model"),
           "arrangement": man.get("arrangement"), "path_settings": path_settings(cfg, man),
           "pairs_stored": len(stored), "pairs_computed": len(computed),
           "all": pair_stats(merged), "computed": pair_stats(computed),
           "computed_pairs": computed, "config": C.to_dict(cfg), "out": str(out)}
    figs = [(plot_min_acc(merged, root.name), "min_accuracy.png")]
    if computed:
        figs.append((plot_profile(computed, root.name), "profile.png"))
        figs.append((plot_control_loss(computed, root.name), "control_loss.png"))
    plt = _plt()
    for fig, name in figs:
        save_figure(fig, out / name, mr)
        plt.close(fig)
    res["seconds"] = round(time.time() - t0, 2)
    table = render_table(res)
    atomic_write_json(out / "results.json", res)
    atomic_write_bytes(out / "config.yaml", C.dump_yaml(cfg).encode())
    atomic_write_bytes(out / "table.md", table.encode())
    if mr is not None:
        mr.metrics(metrics(res))
        mr.artifact(out / "results.json")
        mr.artifact(out / "table.md")
    res["_table"] = table
    return res


def summary_line(res: dict) -> dict:
    a = res["all"]
    return {"corpus": res["corpus"], "pairs": a["pairs"], "pairs_stored": res["pairs_stored"],
            "pairs_computed": res["pairs_computed"],
            "linear_solved": a["linear"]["solved"], "bezier_solved": a["bezier"]["solved"],
            "linear_fails": a["linear_fails"],
            "bezier_solved_where_linear_fails": a["bezier_solved_where_linear_fails"],
            "length_ratio_median": a["length_ratio"]["median"],
            "linear_min_acc_mean": a["linear"]["min_acc"]["mean"],
            "bezier_min_acc_mean": a["bezier"]["min_acc"]["mean"],
            "linear_mean_acc_mean": a["linear"]["mean_acc"]["mean"],
            "bezier_mean_acc_mean": a["bezier"]["mean_acc"]["mean"],
            "linear_solved_path_frac": a["linear"]["solved_path_frac"],
            "bezier_solved_path_frac": a["bezier"]["solved_path_frac"],
            "length_ratio_mean": a["length_ratio"]["mean"],
            "length_ratio_max": a["length_ratio"]["max"],
            "cosine_distance_mean": a["cosine_distance"]["mean"],
            "out": res["out"], "seconds": res["seconds"]}


def metrics(res: dict) -> dict:
    s = summary_line(res)
    return {f"eval/connectivity_{k}": v for k, v in s.items()
            if isinstance(v, (int, float)) and k != "seconds" and v is not None} | {
        "eval/connectivity_seconds": res["seconds"]}


def render_table(res: dict) -> str:
    a = res["all"]
    lines = [f"## Connectivity of same-text solutions: {res['corpus']} ({a['pairs']} pairs: "
             f"{res['pairs_stored']} from pairs/, "
             f"{sum(not r['in_pairs'] for r in res['computed_pairs'])} new of "
             f"{res['pairs_computed']} computed)", ""]
    if not a["pairs"]:
        lines += ["n/a: the corpus has no connectivity pairs (no text with 2 solved restarts "
                  "was checked); rebuild with restarts, or pass compute=N if such texts exist.",
                  ""]
        return "\n".join(lines)

    def mm(d):
        return f"{fmt(d['mean'])} (median {fmt(d['median'])})"
    lr, cd = a["length_ratio"], a["cosine_distance"]
    lines += [
        "| measure | linear | Bezier | paper (Sec. 4, Fig. 6) |", "|---|---|---|---|",
        f"| min accuracy along the path, mean over pairs | {mm(a['linear']['min_acc'])} | "
        f"{mm(a['bezier']['min_acc'])} | \"the linear interpolation between same-text "
        f"solutions also does not produce a solution\"; Bezier curves lie \"inside "
        f"'solution set'\" |",
        f"| mean accuracy along the path | {mm(a['linear']['mean_acc'])} | "
        f"{mm(a['bezier']['mean_acc'])} | Fig. 6 (no numbers in the text) |",
        f"| pairs whose path stays solved (accuracy 1 at every t of the grid) | "
        f"{a['linear']['solved']} of {a['pairs']} | {a['bezier']['solved']} of {a['pairs']}; "
        f"{a['bezier_solved_where_linear_fails']} of the {a['linear_fails']} whose linear path "
        f"fails | linear: not connected; Bezier: \"they form a connected set\" |",
        f"| Bezier length / linear length | 1 | mean {fmt(lr['mean'])}, max {fmt(lr['max'])} | "
        f"\"the maximum ratio ... is only 1.2\" |",
        f"| cosine distance between the two e's | mean {fmt(cd['mean'])}, p10-p90 "
        f"{fmt(cd['p10'])}-{fmt(cd['p90'])} | | Kuratov et al.: same-text solutions \"often end "
        f"up far apart\" |",
        "", "(paper: 10 solutions for each of 5 texts, 5 x 10 x 9/2 = 225 pairs.)", ""]
    c = res["computed"]
    if c["pairs"]:
        ps = res["path_settings"]
        lines += [f"Computed here ({c['pairs']} pair(s), grid {ps['path_grid']} t values, "
                  f"Bezier {ps['bezier_steps']} steps x {ps['bezier_samples']} t samples, "
                  f"relative lr {ps['bezier_lr']}): linear min accuracy "
                  f"{mm(c['linear']['min_acc'])}, Bezier {mm(c['bezier']['min_acc'])}; "
                  f"control-point training stopped {stops(res['computed_pairs'])}; "
                  f"profile.png shows accuracy along t, control_loss.png the training.", ""]
    return "\n".join(lines)


def stops(rows: list[dict]) -> str:
    """'solved 14, converged 5, cap 1 (median 40 steps)' for computed pairs."""
    kinds = ("solved", "converged", "cap")
    parts = [f"{k} {sum(r['bezier_stop'] == k for r in rows)}" for k in kinds]
    med = np.median([r["bezier_steps_run"] for r in rows])
    return f"{', '.join(parts)} (median {med:.0f} steps)"


def plot_min_acc(rows: list[dict], title: str):
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    keys = [("linear_min_acc", "linear\nmin"), ("bezier_min_acc", "Bezier\nmin"),
            ("linear_mean_acc", "linear\nmean"), ("bezier_mean_acc", "Bezier\nmean")]
    if rows:
        data = [[r[k] for r in rows] for k, _ in keys]
        ax.boxplot(data, showmeans=True)
        ax.set_xticks(range(1, len(keys) + 1), [lab for _, lab in keys])
        jit = np.random.default_rng(0)
        for x, v in enumerate(data, start=1):
            ax.plot(x + jit.uniform(-0.12, 0.12, len(v)), v, ".", alpha=0.5, color="k")
    else:
        ax.text(0.5, 0.5, "no pairs", ha="center", transform=ax.transAxes)
    ax.set_ylabel("accuracy along the path")
    ax.set_ylim(-0.05, 1.05)
    ax.set_title(f"{title}: {len(rows)} same-text pairs (cf. paper Fig. 6)", fontsize=10)
    fig.tight_layout()
    return fig


def plot_profile(rows: list[dict], title: str):
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for path, color in (("linear", "tab:blue"), ("bezier", "tab:orange")):
        for r in rows:
            ax.plot(r["t"], r[f"{path}_acc"], color=color, alpha=0.25, lw=0.8)
        mean = np.mean([r[f"{path}_acc"] for r in rows], axis=0)
        ax.plot(rows[0]["t"], mean, color=color, lw=2.5,
                label=f"{'Bezier' if path == 'bezier' else 'linear'} (mean of {len(rows)})")
    ax.set_xlabel("t along the path")
    ax.set_ylabel("token accuracy")
    ax.set_ylim(-0.05, 1.05)
    ax.legend(fontsize=8)
    ax.set_title(f"{title}: accuracy along linear and Bezier paths (cf. paper Fig. 6)",
                 fontsize=10)
    fig.tight_layout()
    return fig


def plot_control_loss(rows: list[dict], title: str):
    """The control point's training: expected loss along the curve per check, one line a pair."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    colors = {"solved": "tab:green", "converged": "tab:orange", "cap": "tab:red"}
    for r in rows:
        h = r["bezier_history"]
        ax.plot([x["step"] for x in h], [max(x["loss"], 1e-4) for x in h],
                color=colors.get(r["bezier_stop"], "k"), alpha=0.6, lw=1)
    for stop, c in colors.items():
        k = sum(r["bezier_stop"] == stop for r in rows)
        ax.plot([], [], color=c, label=f"{stop} ({k})")
    ax.set_yscale("log")
    ax.set_xlabel("control-point step")
    ax.set_ylabel("expected CE along the curve (grid mean)")
    ax.legend(fontsize=8, title="stopped because")
    ax.set_title(f"{title}: Bezier control-point training, {len(rows)} pairs", fontsize=10)
    fig.tight_layout()
    return fig


def preflight(cfg: ConnectivityConfig) -> None:
    """Bad input (no corpus, an unfinished one) fails before an MLflow run is opened."""
    open_corpus(cfg.corpus, cfg.allow_partial)


def bad_input_errors() -> tuple[type[Exception], ...]:
    return K.CorpusError, ModelLoadError


def main(argv=None) -> int:
    def body(cfg, mr):
        res = study(cfg, mr)
        return res.pop("_table"), summary_line(res)

    return E.run_command(ConnectivityConfig, __doc__, argv, "connectivity", body,
                         paths=CORPUS_FLAG, preflight=preflight,
                         run_name=corpus_run_name("connectivity"),
                         errors=bad_input_errors)


if __name__ == "__main__":
    sys.exit(main())
