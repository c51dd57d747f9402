"""The texts of an eval.recipes run left unsolved at its cap, refitted with `default`
under a longer cap (its restart_after=300 gives each a fresh attempt at step 300).

  .venv/bin/python -u docs/research/default-recipe/tail.py outputs/recipes/RUN/results.json SEED CAP
"""
import json
import sys

from proto.sources import sample_texts
from proto.fit import FitRow, Fitter, get_recipe
from proto.models import load_model

path, seed, cap = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
res = json.loads(open(path).read())["results"]
lm = load_model("smollm2-135m", dtype="float32", verbose=False)
texts = []
for src in ("britannica", "random-words"):
    texts += sample_texts(lm.tokenize, src, 32, 16, seed=seed)
old = {f"{e['source']}:{i}": s for e in res
       for i, s in zip(range(0 if e["source"] == "britannica" else 16, 32), e["steps"])}
left = [i for i, (src, _) in enumerate(texts) if old[f"{src}:{i}"] >= 300]
print(f"unsolved at 300 in {path}: {[f'{texts[i][0]}:{i}' for i in left]}", flush=True)
rows = [FitRow(texts[i][1], f"{texts[i][0]}:{i}", 0) for i in left]
out = Fitter(lm, get_recipe("default", max_steps=cap), batch_size=32, seed=seed).fit(
    rows, progress=lambda p: p["step"] % 50 == 0 and print(
        f"step {p['step']}: {p['solved']}/{p['total']} solved", flush=True))
for r in sorted(out, key=lambda r: r.index):
    print(f"{r.key}: solved {r.solved} at step {r.steps} (attempt {r.attempts}), "
          f"accuracy {r.accuracy:.3f}", flush=True)
