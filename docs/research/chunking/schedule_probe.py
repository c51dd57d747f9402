"""K refinement steps from the shipped encoder's e on chunks: the `refine` recipe's constant lr
against a cosine decay over the K steps (lr 0.3 -> 0.03 at step K), and a higher constant lr.

  python docs/research/chunking/schedule_probe.py > docs/research/chunking/schedule_probe.jsonl
  python docs/research/chunking/schedule_probe.py lr >> docs/research/chunking/schedule_probe.jsonl
      # constant lr 0.5 / 0.7 / 1.0 after K = 5 and 10

Texts: the first 32 sentences of configs/eval/sentences.txt (as eval.chunk_table), chunks of 4
and 6 tokens, all chunks one batched fit per arm (encoder.refine.curve), float32 as the
encoder was trained. One line per (C, K, arm): token accuracy and texts exact after K steps.
"""
import dataclasses
import json
import sys
import time

import torch

from encoder import checkpoint as ckpt
from encoder.models import encode_tokens
from encoder.refine import curve, refine_recipe, text_scores
from proto.io import read_texts
from proto.solution import chunk_rows


def arms(k: int):
    base = refine_recipe(0.3, k)
    if LR_SWEEP:
        return {f"constant {lr}": dataclasses.replace(base, lr=lr) for lr in (0.5, 0.7, 1.0)}
    return {"constant 0.3": base,
            "cosine 0.3 over K": dataclasses.replace(base, schedule="cosine", schedule_steps=k),
            "constant 0.5": dataclasses.replace(base, lr=0.5)}


LR_SWEEP = sys.argv[1:] == ["lr"]
KS = (5, 10) if LR_SWEEP else (10, 20)


def main():
    torch.set_num_threads(1)
    enc, decoder, m, blob = ckpt.load("default")
    lm = decoder.lm
    toks = [lm.tokenize(t) for t in read_texts([], "configs/eval/sentences.txt")[:32]]
    grid = {c: chunk_rows(toks, c) for c in (4, 6)}
    e = {c: encode_tokens(enc, [x["token_ids"] for x in ch], None, batch_size=len(ch)).cpu()
         for c, ch in grid.items()}
    enc.release()
    m = m.detach().float().cpu()
    for c, chunks in grid.items():
        units = [x["token_ids"] for x in chunks]
        for k in KS:
            for name, recipe in arms(k).items():
                t0 = time.time()
                res = curve(lm, recipe, units, e[c], m, None, (k,))["results"]
                acc, exact, _ = text_scores(res, chunks, toks, k)
                print(json.dumps({"chunk": c, "k": k, "arm": name, "token_accuracy": acc,
                                  "exact": exact, "seconds": round(time.time() - t0, 1)}),
                      flush=True)
                print(f"C={c} K={k} {name}: {acc:.3f} / {exact:.2f}", file=sys.stderr)


if __name__ == "__main__":
    main()
