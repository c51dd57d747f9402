"""The N=32 median over several eval.recipes runs pooled, with a bootstrap interval.

  .venv/bin/python docs/research/default-recipe/pooled.py outputs/recipes/RUN1/results.json ...
  .venv/bin/python docs/research/default-recipe/pooled.py docs/research/default-recipe/results/n32-default-seed*.json
(copies of the results.json of the seed 0, 5 and 77 runs of `default`, N=32, 16 + 16 texts,
cap 300, measured 2026-11-23; logs in logs/)
"""
import json
import random
import statistics
import sys

by_src: dict[str, list] = {}
for path in sys.argv[1:]:
    res = json.loads(open(path).read())["results"]
    steps = [s for e in res for s in e["steps"]]
    solved = sum(round(e["solved_frac"] * e["texts"]) for e in res)
    print(f"{path}: {len(steps)} texts, {solved} solved, median {statistics.median(steps)}")
    for e in res:
        by_src.setdefault(e["source"], []).extend(e["steps"])
allst = [s for v in by_src.values() for s in v]
for src, v in by_src.items():
    print(f"{src}: {len(v)} texts, median {statistics.median(v)}")
rng = random.Random(0)
meds = sorted(statistics.median(rng.choices(allst, k=len(allst))) for _ in range(10000))
print(f"all {len(allst)} texts: median {statistics.median(allst)}, bootstrap 95 % interval "
      f"{meds[249]}-{meds[9749]} (10 000 resamples), P(median <= 60) "
      f"{sum(m <= 60 for m in meds) / 1e4:.2f}")
