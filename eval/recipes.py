"""Recipe study: steps to solve for candidate fitting recipes, on natural and random-word texts.

  python -m eval.recipes                                    # configs/eval/recipes.yaml defaults
  python -m eval.recipes --config configs/eval/recipes.yaml candidates=[sink,default] lengths=[32]
  python -m eval.recipes model=tiny-random lengths=[8] n_texts=4 candidates=[paper,default] \\
      max_steps=200                                         # tiny CPU run, seconds

For every candidate and length N, `n_texts` natural texts (Gutenberg prose) and `n_texts`
random-word texts are fitted in one batched run; the table gives median and p90 steps to solve
(an unsolved text counts as the cap), the solved fraction within the cap, and the row-steps
spent (restarts cost their rows). Candidates are recipes plus how m is obtained:
  m_mode: row     each text has its own m (fitted with e)
          warm    m fitted once jointly on `warm_texts` other texts, then frozen
                  (`warm_overrides`: Recipe fields for that joint fit only, e.g. a lower lr)
          rowmean the warm texts fitted each with its own m; the mean of those m's, frozen
          random  a random m (N(0, init std), like any initial vector), frozen
  restarts/race:  several rows per text; the first to solve ends the others.
Writes outputs/recipes/<run>/results.json, table.md, steps.png; logs to MLflow `eval`.
"""
from __future__ import annotations

import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from eval.common import check_fits, table_errors
from proto import config as C
from proto.fit import RECIPES, FitRow, Fitter, embedding_std, fit_shared_m, get_recipe, init_vector
from proto.io import atomic_write_json
from proto.models import ModelFields, load_model
from proto.sources import sample_texts
from proto.tracking import run as mlflow_run


@dataclasses.dataclass
class Candidate:
    name: str
    recipe: str = "default"                 # base recipe name
    overrides: dict = dataclasses.field(default_factory=dict)  # Recipe field overrides
    m_mode: str = "row"                     # row | warm | rowmean | random
    warm_overrides: dict = dataclasses.field(default_factory=dict)  # warm fit only
    e_init: str = "random"                  # random | warm_mean (centre on the warm-up e's)
    restarts: int = 1
    race: bool = True

    def __post_init__(self):
        if self.m_mode not in ("row", "warm", "rowmean", "random"):
            raise ValueError(f"candidate {self.name}: m_mode must be row, warm, rowmean or "
                             f"random")
        if self.restarts < 1:
            raise ValueError(f"candidate {self.name}: restarts must be >= 1")
        get_recipe(self.recipe, **self.overrides)


@dataclasses.dataclass
class RecipesConfig(ModelFields):
    lengths: list[int] = dataclasses.field(default_factory=lambda: [16, 32, 64])
    n_texts: int = 16                       # per source
    sources: list[str] = dataclasses.field(default_factory=lambda: ["britannica", "random-words"])
    candidates: list[str] = dataclasses.field(default_factory=lambda: ["paper", "sink", "default"])
    variants: list[Candidate] = dataclasses.field(default_factory=list)
    max_steps: int = 1000
    batch_size: int = 32
    warm_texts: int = 16
    warm_steps: int = 300
    seed: int = 0
    out: str = "outputs/recipes"
    mlflow: bool = True
    texts_json: str = ""                    # reuse a fixed text set (written by dump_texts)
    dump_texts: bool = False                # write the text set to texts_json and stop

    def __post_init__(self):
        if not self.lengths or min(self.lengths) < 1:
            raise ValueError("lengths must be positive token counts")
        if self.n_texts < 1:
            raise ValueError("n_texts must be >= 1")
        if self.dump_texts and not self.texts_json:
            raise ValueError("dump_texts=true writes the text set to texts_json=FILE: give one")


def builtin_candidates() -> dict[str, Candidate]:
    return {name: Candidate(name=name, recipe=name) for name in RECIPES}


def saved_texts(path: str) -> dict:
    """The text set dump_texts=true wrote to `path`; ConfigError if it is absent or is not one."""
    try:
        saved = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise C.ConfigError(f"texts_json {path} not found: write it with dump_texts=true") from None
    except (OSError, ValueError) as exc:
        raise C.ConfigError(f"texts_json {path} is not a text set of dump_texts=true: "
                            f"{str(exc).splitlines()[0][:120]}") from None
    if not isinstance(saved, dict):
        raise C.ConfigError(f"texts_json {path} is not a text set of dump_texts=true")
    return saved


def _sampler(cfg: RecipesConfig, tokenize):
    """sample_texts, or lookups in a saved text set so a study can rerun where sources are absent."""
    saved = saved_texts(cfg.texts_json) if cfg.texts_json and not cfg.dump_texts else {}
    drawn = {}

    def sample(src, n, count, seed):
        key = f"{src}|{n}|{count}|{seed}"
        bigger = [k for k in saved if k.startswith(f"{src}|{n}|") and k.endswith(f"|{seed}")
                  and int(k.split("|")[2]) >= count]
        if key in saved or bigger:
            out = [(a, list(b)) for a, b in saved[key if key in saved else bigger[0]]][:count]
        else:
            out = sample_texts(tokenize, src, n, count, seed=seed)
        drawn[key] = out
        return out
    return sample, drawn


def summarise(texts: list[list], cap: int) -> dict:
    """Steps to solve over texts, each a list of its rows' FitResults (restarts race): a text's
    steps are its first solving row's, or `cap` if none solved; p90 is the nearest rank."""
    steps, solved = [], 0
    for rs in texts:
        ok = [r.steps for r in rs if r.solved]
        solved += bool(ok)
        steps.append(min(ok) if ok else cap)
    q = sorted(steps)
    return {"steps": steps, "solved": solved,
            "median": statistics.median(q),
            "p90": q[min(len(q) - 1, int(round(0.9 * (len(q) - 1))))],
            "row_steps": sum(r.steps for rs in texts for r in rs)}


def study(cfg: RecipesConfig, log=print) -> dict:
    lm = load_model(cfg.model, device=cfg.device or None, dtype=cfg.dtype)
    sample_texts, drawn = _sampler(cfg, lm.tokenize)
    if cfg.dump_texts:
        for n in cfg.lengths:
            for src in cfg.sources:
                sample_texts(src, n, cfg.n_texts, cfg.seed)
            sample_texts(cfg.sources[0], n, cfg.n_texts + cfg.warm_texts, cfg.seed + 1)
        atomic_write_json(cfg.texts_json, drawn)
        return {"model": lm.identity, "results": [], "dumped": cfg.texts_json}
    cands = builtin_candidates()
    cands.update({c.name: c for c in cfg.variants})
    unknown = [c for c in cfg.candidates if c not in cands]
    if unknown:
        raise C.ConfigError(f"unknown candidate(s) {unknown}; known: {sorted(cands)}")
    for cname in cfg.candidates:
        check_fits(lm, get_recipe(cands[cname].recipe, **cands[cname].overrides),
                   max(cfg.lengths))
    results = []
    warm_cache: dict[tuple, torch.Tensor] = {}
    for n in cfg.lengths:
        texts = []
        for src in cfg.sources:
            texts += sample_texts(src, n, cfg.n_texts, cfg.seed)
        for cname in cfg.candidates:
            cand = cands[cname]
            recipe = dataclasses.replace(get_recipe(cand.recipe, **cand.overrides),
                                         max_steps=cfg.max_steps)
            m = None
            e_center = None
            warm_s = 0.0
            if cand.m_mode == "random":
                m = init_vector(cfg.seed + 7919, lm.d_model,
                                 recipe.init_std or embedding_std(lm)).to(lm.device)
            if cand.m_mode in ("warm", "rowmean"):
                wkey = (n, cand.m_mode, cand.recipe, json.dumps(cand.overrides, sort_keys=True),
                        json.dumps(cand.warm_overrides, sort_keys=True))
                if wkey not in warm_cache:
                    t0 = time.time()
                    warm = sample_texts(cfg.sources[0], n, cfg.n_texts + cfg.warm_texts,
                                        cfg.seed + 1)
                    warm = [ids for _, ids in warm if all(ids != t for _, t in texts)]
                    wrecipe = dataclasses.replace(recipe, **cand.warm_overrides)
                    if cand.m_mode == "warm":
                        wm, wres = fit_shared_m(lm, warm[: cfg.warm_texts], wrecipe,
                                                steps=cfg.warm_steps, seed=cfg.seed)
                    else:
                        wres = Fitter(lm, dataclasses.replace(wrecipe, max_steps=cfg.warm_steps),
                                      batch_size=cfg.batch_size, seed=cfg.seed).fit(
                            [FitRow(ids, f"warm{i}", 0)
                             for i, ids in enumerate(warm[: cfg.warm_texts])])
                        wm = torch.stack([r.m for r in wres]).mean(0)
                    warm_cache[wkey] = (wm, torch.stack([r.e for r in wres]).mean(0))
                    warm_s = time.time() - t0
                    log(f"  {cand.m_mode} m for N={n}: {sum(r.solved for r in wres)}/"
                        f"{len(wres)} warm texts solved, {warm_s:.0f} s")
                m, mean_e = warm_cache[wkey]
                if cand.e_init == "warm_mean":
                    e_center = mean_e
            rows = [FitRow(ids, f"{src}:{i}", r) for i, (src, ids) in enumerate(texts)
                    for r in range(cand.restarts)]
            fitter = Fitter(lm, recipe, batch_size=cfg.batch_size, seed=cfg.seed,
                            e_center=e_center)
            t0 = time.time()
            def progress(p, name=cname):
                if p["step"] % 50 == 0:
                    log(f"    {name} N={n} step {p['step']}: {p['done']}/{p['total']} done, "
                        f"{p['solved']} solved, {p['step_seconds']:.2f} s/step")
            res = fitter.fit(rows, m_mode="frozen" if m is not None else "row", m=m,
                             race=cand.race and cand.restarts > 1, progress=progress)
            wall = time.time() - t0
            by_text: dict[str, list] = {}
            for r in res:
                by_text.setdefault(r.key, []).append(r)
            for src in cfg.sources:
                per = [v for k, v in by_text.items() if k.startswith(src + ":")]
                sm = summarise(per, cfg.max_steps)
                row_steps = sm["row_steps"]
                entry = {
                    "candidate": cname, "n": n, "source": src, "texts": len(per),
                    "solved_frac": sm["solved"] / max(1, len(per)),
                    "median_steps": sm["median"], "p90_steps": sm["p90"],
                    "row_steps": row_steps, "wall_s": wall, "warm_s": warm_s,
                    "steps": sm["steps"], "recipe": dataclasses.asdict(recipe),
                    "m_mode": cand.m_mode, "restarts": cand.restarts,
                }
                results.append(entry)
                log(f"N={n:4d} {cname:>18s} {src:>13s}: solved {entry['solved_frac']:.2f} "
                    f"median {entry['median_steps']:.0f} p90 {entry['p90_steps']} "
                    f"row-steps {row_steps} ({wall:.0f} s for the N={n} batch)")
    return {"model": lm.identity, "results": results}


def table(results: list[dict]) -> str:
    lines = ["| candidate | N | source | solved | median steps | p90 steps | row-steps |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['candidate']} | {r['n']} | {r['source']} | {r['solved_frac']:.2f} | "
                     f"{r['median_steps']:.0f} | {r['p90_steps']} | {r['row_steps']} |")
    return "\n".join(lines)


def plot(results: list[dict], path: Path):
    import matplotlib  # lazy: matplotlib (~1 s) is needed only to draw plots
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: matplotlib (~1 s) is needed only to draw plots
    lengths = sorted({r["n"] for r in results})
    fig, axes = plt.subplots(1, len(lengths), figsize=(5 * len(lengths), 4), squeeze=False)
    for ax, n in zip(axes[0], lengths):
        rs = [r for r in results if r["n"] == n]
        labels = [f"{r['candidate']}\n{r['source'][:6]}" for r in rs]
        ax.boxplot([r["steps"] for r in rs], tick_labels=labels)
        ax.set_title(f"N = {n}: steps to solve (cap = unsolved)")
        ax.tick_params(axis="x", labelrotation=60, labelsize=7)
        ax.set_yscale("log")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return fig


def main(argv=None):
    cfg = C.parse_cli(RecipesConfig, __doc__, argv, prog="python -m eval.recipes")
    if cfg is None:
        return 2
    with mlflow_run("eval", cfg, run_name="recipes", enabled=cfg.mlflow) as mr:
        try:
            rep = study(cfg)
        except table_errors() as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        if cfg.dump_texts:
            C.print_summary({"texts_json": cfg.texts_json})
            return 0
        # the run directory only once the study ran: bad input leaves none behind
        out = Path(cfg.out) / time.strftime("%Y%m%d-%H%M%S")
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(C.dump_yaml(cfg))
        atomic_write_json(out / "results.json", rep)
        md = table(rep["results"])
        (out / "table.md").write_text(md + "\n")
        print(md)
        fig = plot(rep["results"], out / "steps.png")
        mr.figure(fig, "recipes_steps.png")
        mr.artifact(out / "results.json")
        for r in rep["results"]:
            key = f"recipes/{r['candidate']}/N{r['n']}/{r['source']}"
            mr.metrics({f"{key}/median_steps": r["median_steps"],
                        f"{key}/solved_frac": r["solved_frac"]})
    summary = {"out": str(out), "rows": [{k: r[k] for k in ("candidate", "n", "source",
                                                          "solved_frac", "median_steps",
                                                          "p90_steps")} for r in rep["results"]]}
    C.print_summary(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
