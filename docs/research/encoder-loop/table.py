"""The tables of docs/research/encoder-loop/README.md from loop.jsonl (curves, training summaries,
the loop by turn) and bench_corpus results.json files; with --plot, the loop by turn as a PNG,
logged to MLflow (experiment `encoder`, run `encoder-loop`, one step per turn).

  python docs/research/encoder-loop/table.py docs/research/encoder-loop/loop.jsonl \\
      docs/research/encoder-loop/bench-results.json docs/research/encoder-loop/bench2-results.json \\
      --plot docs/research/encoder-loop/loop.png

The turns' corpora are read from the paths their JSON lines name (outputs/encoder-loop/...).
"""
import argparse
import json
import statistics
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from data_gen.corpus import read_table  # noqa: E402
from eval.bench_corpus import table as bench_table  # noqa: E402
from proto.tracking import run as mlflow_run  # noqa: E402

# (turn, encoder arm, the corpus built from it): the loop's main line trains on the stream,
# as item 4 found best; `self` (trained with the last corpus) and `noise2` (noise on e) are
# side arms of the same wall time
TURNS = [(0, "default", "c1-from-default"), (1, "plain", "c2-from-plain"),
         (1, "self", None), (2, "plain2", "c3-from-plain2"), (2, "noise2", "c3-from-noise2")]
MAIN = {"default", "plain", "plain2"}

KS = ["0", "1", "2", "5", "10", "20"]


def curves(rows: list[dict], which: str) -> list[str]:
    out = [f"| {which} | " + " | ".join(f"K = {k}" for k in KS) + " |",
           "|---" * (len(KS) + 1) + "|"]
    start = None
    for r in rows:
        if r.get("set") != which or "curve" not in r:
            continue
        c = r["curve"]
        start = start or c.get("start")
        out.append(f"| {r['arm']} | " + " | ".join(
            "{:.3f} / {:.0%}".format(*c["encoder"][k]) for k in KS) + " |")
    if start:
        out.append("| e0, the corpus recipe | " + " | ".join(
            "{:.3f} / {:.0%}".format(*start[k]) for k in KS) + " |")
    return out


def training(rows: list[dict]) -> list[str]:
    out = ["| arm | steps | texts | seconds |", "|---|---|---|---|"]
    for r in rows:
        if "checkpoint" in r and "steps" in r and "curve" not in r:
            cfg = Path(r["checkpoint"]).parent / "config.yaml"
            texts = (r["steps"] * yaml.safe_load(cfg.read_text())["train"]["global_batch"]
                     if cfg.exists() else "")
            out.append(f"| {r['arm']} | {r['steps']} | {texts} | {r['seconds']:.0f} |")
    return out


def corpus_steps(path: str) -> tuple[int, float]:
    """Row-steps of a corpus (every row's fitting steps, summed) and their median."""
    steps = read_table(path, columns=["steps"]).column("steps").to_pylist()
    return sum(steps), statistics.median(steps)


def turns(rows: list[dict]) -> list[dict]:
    """One record per encoder of the loop: its curves at K = 0 and 5, and its corpus."""
    out = []
    for turn, arm, corpus in TURNS:
        rec = {"turn": turn, "encoder": arm}
        for r in rows:
            if r.get("arm") == arm and "curve" in r:
                c = r["curve"]["encoder"]
                rec[f"{r['set']}_k0"], rec[f"{r['set']}_k5"] = c["0"][0], c["5"][0]
            if corpus and r.get("arm") == corpus and Path(r["corpus"]).exists():
                rec["row_steps"], rec["median_steps"] = corpus_steps(r["corpus"])
                rec["solved"], rec["texts"] = r["solved"], r["texts"]
                rec["corpus_seconds"], rec["texts_per_hour"] = r["seconds"], r["texts_per_hour"]
        if len(rec) > 2:
            out.append(rec)
    return out


def loop_table(recs: list[dict]) -> list[str]:
    out = ["| turn | encoder | N = 8, K = 0 / 5 | sentences (chunks), K = 0 / 5 | its corpus: "
           "solved | row-steps | median | seconds | texts/h |", "|---" * 9 + "|"]
    for r in recs:
        def pair(s):
            return (f"{r[s + '_k0']:.3f} / {r[s + '_k5']:.3f}" if s + "_k0" in r else "—")
        corpus = (f"{r['solved']}/{r['texts']} | {r['row_steps']} | {r['median_steps']:g} | "
                  f"{r['corpus_seconds']:.0f} | {r['texts_per_hour']:.0f}"
                  if "row_steps" in r else "— | — | — | — | —")
        out.append(f"| {r['turn']} | {r['encoder']} | {pair('n8')} | "
                   f"{pair('sentences32-c6')} | {corpus} |")
    return out


def plot(recs: list[dict], out: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4.5))
    groups = [("stream (the main line)", "o-", [r for r in recs if r["encoder"] in MAIN])]
    groups += [(r["encoder"], "s", [r]) for r in recs if r["encoder"] not in MAIN]
    for who, style, line in groups:
        for key, name in (("n8", "N = 8"), ("sentences32-c6", "sentences")):
            pts = [(r["turn"], r[key + "_k5"]) for r in line if key + "_k5" in r]
            if pts:
                a1.plot(*zip(*pts), style, label=f"{name}, {who}")
        pts = [(r["turn"], r["row_steps"]) for r in line if "row_steps" in r]
        if pts:
            a2.plot(*zip(*pts), style, label=f"built from {who}")
    a1.set_xlabel("turn (0 = the shipped encoder)")
    a1.set_ylabel("held-out accuracy after 5 refinement steps")
    a2.set_xlabel("turn")
    a2.set_ylabel("row-steps to fit 511 windows of 6 tokens")
    for a in (a1, a2):
        a.set_xticks(sorted({r["turn"] for r in recs}))
        a.legend(fontsize=8)
    fig.suptitle("The encoder-corpus loop (docs/research/encoder-loop)")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    with mlflow_run("encoder", run_name="encoder-loop") as mr:
        for r in recs:
            line = "stream" if r["encoder"] in MAIN else r["encoder"].rstrip("0123456789")
            mr.metrics({f"{line}/{k}": v for k, v in r.items() if k not in ("turn", "encoder")},
                       step=r["turn"])
        mr.figure(fig, out.name)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("jsonl")
    ap.add_argument("bench", nargs="*", help="eval.bench_corpus results.json files")
    ap.add_argument("--plot", type=Path, help="PNG of the loop by turn (also logged to MLflow)")
    a = ap.parse_args()
    rows = [json.loads(x) for x in open(a.jsonl) if x.strip()]
    recs = turns(rows)
    for block in (training(rows), curves(rows, "n8"), curves(rows, "sentences32-c6"),
                  loop_table(recs)):
        print("\n".join(block) + "\n")
    for b in a.bench:
        print(bench_table(json.load(open(b))) + "\n")
    if a.plot:
        plot(recs, a.plot)


if __name__ == "__main__":
    main()
