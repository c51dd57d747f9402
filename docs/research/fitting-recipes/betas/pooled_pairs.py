"""`default` against beta2 0.95 at N=32, text by text, pooled over sets of seeds.

  .venv/bin/python docs/research/fitting-recipes/betas/pooled_pairs.py
"""
import json
import statistics

from paired import diff_summary   # the script's folder is on sys.path when run as a script


def load(p):
    return {(e["source"], i): s for e in json.loads(open(p).read())["results"]
            for i, s in enumerate(e["steps"])}


for seeds in ([5, 77], [0, 5, 77]):
    a, b = {}, {}
    for s in seeds:
        a.update({(s, k): v for k, v in load(f"docs/research/default-recipe/results/n32-default-seed{s}.json").items()})
        b.update({(s, k): v for k, v in load(f"docs/research/fitting-recipes/betas/results/n32-b2_95-seed{s}.json").items()})
    d = [b[k] - a[k] for k in a]
    print(f"seeds {seeds}: {len(d)} texts; default median {statistics.median(a.values())}, "
          f"unsolved {sum(v >= 300 for v in a.values())}; beta2 0.95 median "
          f"{statistics.median(b.values())}, unsolved {sum(v >= 300 for v in b.values())}; "
          + diff_summary(d))
