"""Paper Table 3 at small scale: the longest text a model reconstructs, natural vs random words.

  python -m eval.capacity --config configs/eval/capacity.yaml              # SmolLM2, CPU default
  python -m eval.capacity --config configs/eval/capacity.yaml shared_m=warm max_length=45
  python -m eval.capacity model=tiny-random min_length=4 max_length=16 n_texts=2 max_steps=150 \\
      recipe_overrides.lr=0.05 threads=1 out=outputs/eval/capacity-tiny   # tiny run, ~25 s
  # paper scale (the paper's grid 4 .. 1448, every length fitted, its optimiser; GPU; the paper
  # does not give its text count, 50 is Table 1's):
  python -m eval.capacity --config configs/eval/capacity.yaml recipe=paper max_steps=0 \\
      min_length=4 max_length=1448 n_texts=50 patience=0 batch_size=64
  # (a unit-shared m needs its whole group in one batch, as proto.fit has no gradient
  # accumulation: 100 rows of 1448 tokens will not fit one GPU; use shared_m=warm there or
  # fewer texts)

Texts are prefixes of windows of the longest grid length from each source (`britannica`:
natural prose from the 1911 Britannica; `random-words`: words drawn uniformly from the top
100k English words, the paper's GloVe-vocabulary control). Lengths run up the paper's sqrt(2) grid
(floor(2^(k/2)): 4, 5, 8, 11, 16, 22, 32, 45, 64, 90, 128, ...); a prefix counts as fitted when
its accuracy is >= `threshold` (0.99, the paper's rule; fitting also stops there), and a
text's capacity is the LARGEST fitted grid length (shorter failures do not cap it). Reported
per source and mode at each text's capacity: C_tokens (correctly decoded tokens) and H_LM (the
LM's own cross-entropy of that prefix, nats, proto.decode.h_lm), mean ± std over texts, beside
the paper's Table 3 (Pythia-160M, the paper's model nearest in size to SmolLM2-135M, and
Llama-3.2-1B; natural prose is set beside PG-19).

Modes: `not_shared` (e and m per text) and `shared` (one m for all texts of a length).
`shared_m: unit` (default) trains that one m jointly with every text's e at each length, which
is the paper's "share p" (m shared between texts and seeds, trained together) and the joint
optimisation Table 2 measures. `shared_m: warm` instead fits m once on `warm_texts` other
texts of `warm_length` tokens and freezes it, the way data_gen builds a corpus; it answers the
project's question (how far does the corpus's frozen m reach) rather than the paper's.
`patience` stops a text's climb after that many consecutive failed lengths (1 on a CPU: the
longest, failing fits cost the most); 0 fits every grid length, as the paper does. In unit
mode the group stays every text until none climbs, so m is always shared by the same set.
`restarts: k` fits k seeds of every text and keeps the best (the paper's "max"; a failed
fit is mostly the draw of the initial vectors): not shared, the k rows of a text race (the
first to fit ends the others) and `tail_restarts` adds seeds in idle batch rows; shared
(unit), seed r is its own group of all texts with its own m.
Each (length, mode) is ONE batched Fitter.fit call over all still-climbing texts of all sources.

Default config cost, measured: SmolLM2-135M on the 2-core CPU, 2 texts per source, grid
8..32, cap 300 steps, patience 1: ~13 minutes (6 min at the former cap of 120). The N >= 22
fits dominate, above all the shared ones, whose group runs to the cap as soon as one text
cannot be fitted.
A long climb is a background job: after every (length, mode) fit its state goes to
out/partial.json, and the same command run again resumes from it (same config and texts).
Writes outputs/eval/capacity/{config.yaml,results.json,table.md,capacity.png}; logs to MLflow
(experiment `eval`); last stdout line is JSON (capacity, C_tokens, H_LM per source and mode).
"""
from __future__ import annotations

import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

from eval import common as E
from proto import config as C
from proto.decode import h_lm
from proto.fit import FitRow, Fitter, fit_shared_m
from proto.io import atomic_write_json
from proto.models import ModelFields, load_model
from proto.progress import FitProgress
from proto.report import md_table

# Paper Table 3, (C_tokens, H_LM mean, H_LM std) at each model's capacity; "Share p" False /
# True. Copied from /work/shared/paper.txt (rows Random and PG-19, two of the six models).
PAPER_SOURCE = ("paper Table 3: C_tokens and H_LM (mean ± std) at the longest prefix with "
                "accuracy >= 0.99, paper optimiser, grid 4..1448; natural prose set beside "
                "PG-19, random words beside Random (GloVe top-100k words)")
PAPER_T3 = {
    "random": {"Pythia-160M": {False: (90, 507.5, 105.9), True: (45, 247.9, 32.0)},
               "Llama-3.2-1B": {False: (256, 1551.3, 159.5), True: (181, 947.7, 155.0)}},
    "pg19": {"Pythia-160M": {False: (128, 388.4, 66.4), True: (45, 156.0, 33.9)},
             "Llama-3.2-1B": {False: (362, 993.8, 183.4), True: (181, 456.5, 56.5)}},
}
PAPER_ROW = {"britannica": "pg19", "plays": "pg19", "random-words": "random"}
MODES = ("not_shared", "shared")


def sqrt2_grid(lo: int, hi: int) -> list[int]:
    """The paper's length grid floor(2^(k/2)) restricted to [lo, hi]."""
    out, k = set(), 0
    while (n := int(2 ** (k / 2))) <= hi:
        if n >= lo:
            out.add(n)
        k += 1
    return sorted(out)


def capacity(acc_by_length: dict[int, float], threshold: float = 0.99) -> int:
    """Largest length whose accuracy is >= threshold (0 when none is)."""
    return max((n for n, a in acc_by_length.items() if a >= threshold - 1e-9), default=0)


@dataclasses.dataclass
class CapacityConfig(ModelFields):
    lengths: list[int] = dataclasses.field(default_factory=list)  # [] = sqrt(2) grid below
    min_length: int = 8
    max_length: int = 32
    n_texts: int = 2                      # per source
    sources: list[str] = dataclasses.field(
        default_factory=lambda: ["britannica", "random-words"])
    modes: list[str] = dataclasses.field(default_factory=lambda: list(MODES))
    shared_m: str = "unit"                # unit (paper) | warm (frozen, as data_gen does)
    warm_texts: int = 4                   # shared_m=warm: texts m is fitted on
    warm_length: int = 16
    warm_steps: int = 150
    threshold: float = 0.99
    patience: int = 1                     # consecutive failed lengths that end a text's climb
    restarts: int = 1                     # seeds per text (not shared: racing rows; shared:
    #                                       one group, with its own m, per seed); best seed counts
    tail_restarts: int = 0                # not shared: extra seeds filling idle batch rows
    tail_after: float = 1.5               # ... for texts at this x the median solved steps
    recipe: str = "default_v2"            # no learned start, as docs/research/paper-tables
    recipe_overrides: dict = dataclasses.field(default_factory=dict)
    max_steps: int = 120                  # 0 = the recipe's own cap
    batch_size: int = 0                   # 0 = all texts of a call at once (shared: always)
    seed: int = 0
    threads: int = 0
    progress_seconds: float = 30.0
    out: str = "outputs/eval/capacity"
    mlflow: bool = True

    def __post_init__(self):
        if self.min_length < 1 or self.max_length < self.min_length:
            raise ValueError("need 1 <= min_length <= max_length")
        if self.lengths and min(self.lengths) < 1:
            raise ValueError("lengths must be positive")
        if not self.grid():
            raise ValueError(f"no sqrt(2)-grid length in [{self.min_length}, {self.max_length}]")
        if self.n_texts < 1 or not self.sources:
            raise ValueError("n_texts must be >= 1 and sources non-empty")
        if not self.modes or set(self.modes) - set(MODES):
            raise ValueError(f"modes must be from {list(MODES)}, got {self.modes}")
        if self.shared_m not in ("unit", "warm"):
            raise ValueError(f"shared_m must be unit or warm, got {self.shared_m!r}")
        if not 0 < self.threshold <= 1:
            raise ValueError("threshold must be in (0, 1]")
        if min(self.patience, self.batch_size, self.threads, self.tail_restarts,
               self.tail_after) < 0:
            raise ValueError("patience, batch_size, threads, tail_restarts and tail_after must "
                             "be >= 0")
        if self.restarts < 1:
            raise ValueError("restarts must be >= 1")
        if self.warm_texts < 1 or self.warm_length < 1 or self.warm_steps < 1:
            raise ValueError("warm_texts, warm_length and warm_steps must be >= 1")
        E.check_recipe(self.recipe, self.recipe_overrides, self.max_steps)

    def grid(self) -> list[int]:
        return sorted(set(self.lengths)) if self.lengths else sqrt2_grid(self.min_length,
                                                                          self.max_length)


def _warm_m(cfg, lm, recipe, texts, log):
    src = cfg.sources[0]
    pool = E.prefix_texts(lm, src, cfg.warm_length, cfg.warm_texts + len(texts), cfg.seed + 1)
    taken = {tuple(t[:cfg.warm_length]) for t in texts.values()}
    warm = [t for t in pool if tuple(t) not in taken][: cfg.warm_texts]
    t0 = time.time()
    m, res = fit_shared_m(lm, warm, recipe, steps=cfg.warm_steps, seed=cfg.seed)
    info = {"texts": len(warm), "length": cfg.warm_length, "source": src,
            "solved": sum(r.solved for r in res), "seconds": time.time() - t0}
    log(f"warm m: {info['solved']}/{len(warm)} {src} texts of {cfg.warm_length} tokens "
        f"solved jointly in {cfg.warm_steps} steps ({info['seconds']:.0f} s)")
    return m, info


def _fit_length(cfg, lm, recipe, mode, token_lists, keys, warm_m, progress):
    """One batched fit of every text at one length, `cfg.restarts` seeds each; the best seed's
    FitResult per text. Shared (unit): seed r is one group of all texts with its own m."""
    k = cfg.restarts
    rows = [FitRow(t, key, r) for r in range(k) for t, key in zip(token_lists, keys)]
    kw, bs, tail = {"race": k > 1}, cfg.batch_size or len(rows), cfg.tail_restarts
    if mode == "shared" and cfg.shared_m == "unit":
        # a group is every text of this length, so all groups make one batch
        kw, bs, tail = {"m_mode": "unit", "group_size": len(keys)}, len(rows), 0
    elif mode == "shared":
        kw |= {"m_mode": "frozen", "m": warm_m}
    res = Fitter(lm, recipe, batch_size=bs, seed=cfg.seed, tail_restarts=tail,
                 tail_after=cfg.tail_after).fit(
        rows, **kw, progress=progress)
    per_text = [res[i::len(keys)] for i in range(len(keys))]
    return [max(rs, key=lambda r: (r.solved, r.accuracy)) for rs in per_text]


# fields that do not change what a fit gives: a run stopped under other values still resumes
RESUME_IGNORES = ("threads", "progress_seconds", "mlflow", "device", "out")


class _Climb:
    """The climb's state (fits per mode, text and length; failures; who climbs on; calls),
    saved to out/partial.json after every (length, mode) fit, so a stopped run resumes where
    it was instead of refitting; a file from another config or other texts is replaced."""

    def __init__(self, cfg: CapacityConfig, texts: dict, log):
        self.path = Path(cfg.out) / "partial.json"
        names = [f"{k[0]}:{k[1]}" for k in texts]
        self.key = dict(zip(names, texts))
        self.ident = json.loads(json.dumps({
            "config": {k: v for k, v in C.to_dict(cfg).items() if k not in RESUME_IGNORES},
            "texts": dict(zip(names, texts.values()))}))
        self.state = {"done": [], "calls": [],
                      "fit": {m: {k: {} for k in names} for m in cfg.modes},
                      "fails": {m: dict.fromkeys(names, 0) for m in cfg.modes},
                      "climbing": {m: list(names) for m in cfg.modes}}
        if self.path.exists():
            old = json.loads(self.path.read_text())
            if old.get("ident") == self.ident:
                self.state = old["state"]
                log(f"resuming from {self.path}: {len(self.state['done'])} fits done")
            else:
                log(f"{self.path} is from another config or other texts: starting over")

    def done(self, n: int, mode: str) -> bool:
        return f"{n}/{mode}" in self.state["done"]

    def record(self, n: int, mode: str, names: list[str], best, threshold, patience, secs):
        st = self.state
        for k, r in zip(names, best):
            st["fit"][mode][k][str(n)] = {"accuracy": r.accuracy, "c_tokens": r.c_tokens,
                                          "steps": r.steps, "restart": r.restart}
            st["fails"][mode][k] = (0 if r.accuracy >= threshold - 1e-9
                                    else st["fails"][mode][k] + 1)
        if patience:
            st["climbing"][mode] = [k for k in names if st["fails"][mode][k] < patience]
        ok = sum(r.accuracy >= threshold - 1e-9 for r in best)
        st["calls"].append({"n": n, "mode": mode, "texts": len(names), "fitted": ok,
                            "seconds": secs})
        st["done"].append(f"{n}/{mode}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.path, {"ident": self.ident, "state": st})
        return ok

    def fits(self) -> dict:
        """mode -> text key -> length -> result, with the study's tuple keys and int lengths."""
        return {m: {self.key[k]: {int(n): v for n, v in by_n.items()} for k, by_n in t.items()}
                for m, t in self.state["fit"].items()}


def study(cfg: CapacityConfig, log=E.stderr_log) -> dict:
    lm = load_model(cfg.model, device=cfg.device or None, dtype=cfg.dtype)
    grid = cfg.grid()
    # Fitting stops at the capacity rule's threshold, not at 1.0: a longer text needs only 99 %.
    recipe = E.resolve_recipe(cfg.recipe, cfg.recipe_overrides, cfg.max_steps,
                              target_accuracy=cfg.threshold)
    E.check_fits(lm, recipe, grid[-1])
    texts = {(src, i): t for src in cfg.sources
             for i, t in enumerate(E.prefix_texts(lm, src, grid[-1], cfg.n_texts, cfg.seed))}
    warm_m, warm_info = (None, None)
    if "shared" in cfg.modes and cfg.shared_m == "warm":
        warm_m, warm_info = _warm_m(cfg, lm, recipe, texts, log)
    climb = _Climb(cfg, texts, log)
    for n in grid:
        for mode in cfg.modes:
            names = climb.state["climbing"][mode]
            if not names or climb.done(n, mode):
                continue
            if mode == "shared" and cfg.shared_m == "unit":
                # m stays shared by ALL texts while any still climbs: a group shrunk to the
                # survivors would stop sharing and inflate the shared capacity.
                names = list(climb.key)
            t0 = time.time()
            best = _fit_length(cfg, lm, recipe, mode, [texts[climb.key[k]][:n] for k in names],
                               names, warm_m,
                               FitProgress(desc=f"{mode} N={n}", every=cfg.progress_seconds))
            ok = climb.record(n, mode, names, best, cfg.threshold, cfg.patience,
                              time.time() - t0)
            log(f"N={n:<5d} {mode:>10s}: {ok}/{len(names)} fitted (acc >= {cfg.threshold}), "
                f"{len(climb.state['climbing'][mode])} climb on ({time.time() - t0:.0f} s)")
    fit, calls = climb.fits(), climb.state["calls"]
    # Per text: capacity, and C_tokens and H_LM of the prefix at it.
    per_text, how = [], ""
    for mode in cfg.modes:
        caps = {k: capacity({n: v["accuracy"] for n, v in fit[mode][k].items()}, cfg.threshold)
                for k in texts}
        at = [k for k in texts if caps[k] > 0]
        h, how = h_lm(lm, [texts[k][:caps[k]] for k in at]) if at else ([], how)
        hmap = dict(zip(at, h))
        for k in texts:
            c = caps[k]
            per_text.append({"source": k[0], "text": k[1], "mode": mode, "capacity": c,
                             "c_tokens": fit[mode][k][c]["c_tokens"] if c else 0,
                             "h_lm": hmap.get(k, 0.0), "at_grid_top": c == grid[-1],
                             "accuracy_by_length": {str(n): v["accuracy"]
                                                    for n, v in fit[mode][k].items()}})
    groups = []
    for src in cfg.sources:
        for mode in cfg.modes:
            ts = [t for t in per_text if t["source"] == src and t["mode"] == mode]
            cm, cs = E.mean_std([t["c_tokens"] for t in ts])
            hm, hs = E.mean_std([t["h_lm"] for t in ts])
            paper = {name: v[mode == "shared"]
                     for name, v in PAPER_T3.get(PAPER_ROW.get(src, ""), {}).items()}
            groups.append({"source": src, "mode": mode, "texts": len(ts),
                           "capacity_median": statistics.median(t["capacity"] for t in ts),
                           "capacity_mean": statistics.fmean(t["capacity"] for t in ts),
                           "capacities": [t["capacity"] for t in ts],
                           "c_tokens_mean": cm, "c_tokens_std": cs, "h_lm_mean": hm,
                           "h_lm_std": hs, "at_grid_top": sum(t["at_grid_top"] for t in ts),
                           "paper": paper})
    return {"model": lm.identity, "recipe": dataclasses.asdict(recipe), "grid": grid,
            "threshold": cfg.threshold, "shared_m": cfg.shared_m, "warm": warm_info,
            "h_lm_note": how or "no text fitted at any length", "groups": groups,
            "per_text": per_text, "calls": calls, "paper_source": PAPER_SOURCE,
            "texts": {f"{k[0]}:{k[1]}": lm.detokenize(t) for k, t in texts.items()},
            "config": C.to_dict(cfg)}


def _paper_cell(p) -> str:
    return f"{p[0]} / {p[1]:.1f} ± {p[2]:.1f}" if p else "—"


def table(rep: dict) -> str:
    cfg = rep["config"]
    rows = []
    for g in rep["groups"]:
        mode = g["mode"] if g["mode"] == "not_shared" else f"shared ({rep['shared_m']})"
        top = f" ({g['at_grid_top']} at grid top)" if g["at_grid_top"] else ""
        rows.append([g["source"], mode, g["texts"],
                     f"{g['capacity_median']:g}; {g['capacities']}{top}",
                     E.pm(g["c_tokens_mean"], g["c_tokens_std"], 1),
                     E.pm(g["h_lm_mean"], g["h_lm_std"], 1),
                     _paper_cell(g["paper"].get("Pythia-160M")),
                     _paper_cell(g["paper"].get("Llama-3.2-1B"))])
    head = (f"Table 3 at small scale: {rep['model']['name']}, recipe {cfg['recipe']}, cap "
            f"{rep['recipe']['max_steps']} steps, grid {rep['grid']}, fitted = accuracy >= "
            f"{rep['threshold']}, patience {cfg['patience']}, best of {cfg.get('restarts', 1)} "
            f"seed(s) per text.\n"
            "capacity = largest fitted grid length per text (median; per text). C_tokens and "
            f"H_LM (nats; {rep['h_lm_note']}) at each text's capacity, mean ± std over texts; "
            "0 where no length fitted. A capacity at the grid top is a lower bound.\n")
    if rep["warm"]:
        w = rep["warm"]
        head += (f"shared (warm): m fitted once jointly with {w['texts']} other {w['source']} "
                 f"texts of {w['length']} tokens ({w['solved']} solved), then frozen.\n")
    return head + "\n" + md_table(
        ["source", "m", "texts", "capacity", "C_tokens", "H_LM", "paper Pythia-160M C / H_LM",
         "paper Llama-3.2-1B C / H_LM"], rows) + f"\n\nPaper columns: {rep['paper_source']}."


def plot(rep: dict):
    import matplotlib.pyplot as plt  # lazy: matplotlib (~1 s) is needed only to draw plots
    srcs = list(dict.fromkeys(g["source"] for g in rep["groups"]))
    fig, axes = plt.subplots(1, len(srcs), figsize=(5.5 * len(srcs), 4), squeeze=False)
    colors = {"not_shared": "tab:blue", "shared": "tab:orange"}
    for ax, src in zip(axes[0], srcs):
        for t in (t for t in rep["per_text"] if t["source"] == src):
            pts = sorted((int(n), a) for n, a in t["accuracy_by_length"].items())
            ax.plot(*zip(*pts), "o-", color=colors[t["mode"]], alpha=0.6, ms=4,
                    label=t["mode"] if t["text"] == 0 else None)
            if t["capacity"]:
                ax.axvline(t["capacity"], color=colors[t["mode"]], alpha=0.15)
        ax.axhline(rep["threshold"], color="k", ls=":", lw=1)
        ax.set_xscale("log", base=2)
        ax.set_ylim(-0.05, 1.05)
        ax.set_xlabel("prefix length (tokens)")
        ax.set_ylabel("accuracy")
        ax.set_title(f"{src}: accuracy per text (vertical = capacity)", fontsize=10)
        ax.legend(fontsize=8)
    fig.suptitle(f"Table 3: capacity, {rep['model']['name']}", fontsize=10)
    fig.tight_layout()
    return fig


def summary(rep: dict) -> dict:
    return {"grid": rep["grid"], "threshold": rep["threshold"], "shared_m": rep["shared_m"],
            "results": {f"{g['source']}/{g['mode']}": {
                "capacity_median": g["capacity_median"],
                "c_tokens_mean": round(g["c_tokens_mean"], 2),
                "h_lm_mean": round(g["h_lm_mean"], 2), "at_grid_top": g["at_grid_top"]}
                for g in rep["groups"]}}


def metrics(rep: dict) -> dict:
    out = {}
    for g in rep["groups"]:
        k = f"capacity/{g['source']}/{g['mode']}"
        out.update({f"{k}/capacity_mean": g["capacity_mean"],
                    f"{k}/c_tokens_mean": g["c_tokens_mean"], f"{k}/h_lm_mean": g["h_lm_mean"]})
    return out


def main(argv=None) -> int:
    return E.table_main(CapacityConfig, __doc__, argv, "capacity", study, table, plot, summary,
                        metrics)


if __name__ == "__main__":
    sys.exit(main())
