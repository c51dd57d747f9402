"""Session 17: candidates of eval.recipes runs compared text by text against a reference.

Steps to solve depend mostly on the text (session 16: init noise 0.01 vs 0.12 moved few texts),
so a paired comparison on the same texts and seeds separates candidates better than medians.

  .venv/bin/python docs/research/s17/paired.py REF_CANDIDATE outputs/recipes/RUN1/results.json ...
"""
import json
import statistics
import sys

ref_name, paths = sys.argv[1], sys.argv[2:]
cands: dict[tuple, dict[str, list]] = {}   # (n, candidate) -> source -> steps
for path in paths:
    for e in json.loads(open(path).read())["results"]:
        cands.setdefault((e["n"], e["candidate"]), {})[e["source"]] = e["steps"]
for (n, name), by_src in sorted(cands.items()):
    ref = cands.get((n, ref_name))
    allst = [s for v in by_src.values() for s in v]
    line = (f"N={n} {name}: pooled median {statistics.median(allst)}, mean {statistics.mean(allst):.1f}, "
            + ", ".join(f"{src} {statistics.median(v)}" for src, v in by_src.items()))
    if ref is not None and name != ref_name:
        d = [a - b for src in by_src for a, b in zip(by_src[src], ref[src])]
        line += (f" | vs {ref_name}: mean diff {statistics.mean(d):+.1f}, median diff "
                 f"{statistics.median(d):+.1f}, faster {sum(x < 0 for x in d)}, slower "
                 f"{sum(x > 0 for x in d)}, same {sum(x == 0 for x in d)} of {len(d)}")
    print(line)
