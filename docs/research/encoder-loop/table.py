"""The tables of docs/research/encoder-loop/README.md from loop.jsonl (curves, training summaries)
and a bench_corpus results.json.

  python docs/research/encoder-loop/table.py docs/research/encoder-loop/loop.jsonl \\
      docs/research/encoder-loop/bench-results.json
"""
import json
import sys
from pathlib import Path

import yaml

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


def bench(path: str) -> list[str]:
    d = json.load(open(path))
    out = ["| start | solved | seconds | texts/h | vs e0 | median steps | steps, all texts | "
           "vs e0 |", "|---|---|---|---|---|---|---|---|"]
    for a in d["arms"]:
        out.append(f"| {a['arm']} | {a['solved']}/{a['texts']} | {a['seconds']:.0f} | "
                   f"{a['texts_per_hour']:.0f} | x{a['speedup_texts_per_hour']:.2f} | "
                   f"{a['steps_median']} | {a['steps_total']} | x{a['speedup_steps']:.2f} |")
    return out


def main() -> None:
    rows = [json.loads(x) for x in open(sys.argv[1]) if x.strip()]
    for block in (training(rows), curves(rows, "n8"), curves(rows, "sentences32-c6")):
        print("\n".join(block) + "\n")
    if len(sys.argv) > 2:
        print("\n".join(bench(sys.argv[2])))


if __name__ == "__main__":
    main()
