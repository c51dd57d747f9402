"""Candidates of eval.recipes runs compared text by text against a reference.

Steps to solve depend mostly on the text (init noise 0.01 vs 0.12 moved few texts),
so a paired comparison on the same texts and seeds separates candidates better than medians.

  .venv/bin/python docs/research/fitting-recipes/betas/paired.py REF_CANDIDATE outputs/recipes/RUN1/results.json ...
"""
import json
import statistics
import sys


def diff_summary(d: list) -> str:
    """Per-text step differences (candidate - reference) in one line."""
    return (f"mean diff {statistics.mean(d):+.1f}, median diff {statistics.median(d):+.1f}, "
            f"faster {sum(x < 0 for x in d)}, slower {sum(x > 0 for x in d)}, "
            f"same {sum(x == 0 for x in d)} of {len(d)}")


def main(ref_name: str, paths: list) -> None:
    cands: dict[tuple, dict[str, list]] = {}   # (n, candidate) -> source -> steps
    for path in paths:
        for e in json.loads(open(path).read())["results"]:
            cands.setdefault((e["n"], e["candidate"]), {})[e["source"]] = e["steps"]
    for (n, name), by_src in sorted(cands.items()):
        ref = cands.get((n, ref_name))
        allst = [s for v in by_src.values() for s in v]
        line = (f"N={n} {name}: pooled median {statistics.median(allst)}, mean "
                f"{statistics.mean(allst):.1f}, "
                + ", ".join(f"{src} {statistics.median(v)}" for src, v in by_src.items()))
        if ref is not None and name != ref_name:
            d = [a - b for src in by_src for a, b in zip(by_src[src], ref[src])]
            line += f" | vs {ref_name}: " + diff_summary(d)
        print(line)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
