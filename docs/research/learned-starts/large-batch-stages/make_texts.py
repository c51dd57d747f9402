"""The text file of ../gpu-stages/make_texts.py plus a larger training pool for the large-batch
stages and the amortised-start probe.

  .venv/bin/python docs/research/learned-starts/large-batch-stages/make_texts.py .carry/texts.json .carry/texts-big.json
Adds `big|32|source`: 3072 texts per source (seed 2000), with the same filter as ../gpu-stages/make_texts.py
(prose windows sharing any 8-token run with an evaluation text are dropped).
"""
import json
import sys
import time

from proto.sources import sample_texts
from proto.models import load_model

src_path, dst = sys.argv[1:3]
out = json.load(open(src_path))
lm = load_model("smollm2-135m", verbose=False)
t0 = time.time()
ev = [t for k, v in out.items() if k.startswith("eval") for t in v]
grams = {tuple(t[i:i + 8]) for t in ev for i in range(len(t) - 7)}
for src in ("britannica", "random-words"):
    texts = [ids for _, ids in sample_texts(lm.tokenize, src, 32, 3072, seed=2000)]
    kept = [t for t in texts if not any(tuple(t[i:i + 8]) in grams for i in range(len(t) - 7))]
    out[f"big|32|{src}"] = kept
    print(src, len(texts), "->", len(kept), f"{time.time() - t0:.0f}s", flush=True)
json.dump(out, open(dst, "w"))
