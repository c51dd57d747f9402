"""Does a fitted row that the fitter calls solved decode back exactly? By stop margin and
precision, on held-out sentences of 15-20 tokens (configs/eval/sentences.txt).

  python docs/research/solved-means-decodes/margins.py                  # 32 sentences, ~10 min
  python docs/research/solved-means-decodes/margins.py --texts 8 --model tiny-random  # seconds

For each (fit precision, stop margin): fit with the default recipe and the fitter's own
verification off, then decode every row recorded as solved (a) as its solution file is decoded
(OnePass.decode, batches of 64, same precision), (b) alone (batch of 1), (c) in the other
precision. Prints one JSON line per arm and a markdown table.
"""
import argparse
import json
import statistics
import time

import torch

from proto.fit import FitRow, Fitter, get_recipe
from proto.models import load_model


def exact(lm, fitter, res, rows, batch):
    e = torch.stack([r.e for r in res])
    m = torch.stack([r.m for r in res])
    from proto.onepass import OnePass
    op = OnePass(lm, fitter.arr)
    preds = op.decode(e, m, [r.token_ids for r in rows], batch_size=batch)
    return [p == r.token_ids for p, r in zip(preds, rows)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--texts", type=int, default=32)
    ap.add_argument("--arms", default="bfloat16:0,bfloat16:1.0,float32:0,float32:0.1")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    # one thread: on a shared 2-core machine a second thread mostly waits on the other jobs
    torch.set_num_threads(a.threads)
    texts = open("configs/eval/sentences.txt").read().splitlines()[:a.texts]
    lms = {dt: load_model(a.model, device="cpu", dtype=dt) for dt in ("bfloat16", "float32")}
    table = []
    for arm in a.arms.split(","):
        dt, margin = arm.split(":")
        lm, other = lms[dt], lms["float32" if dt == "bfloat16" else "bfloat16"]
        rows = [FitRow(lm.tokenize(t), f"t{i}", 0) for i, t in enumerate(texts)]
        fitter = Fitter(lm, get_recipe("default", stop_margin=float(margin)), batch_size=16,
                        tail_restarts=3)
        t0 = time.time()
        res = fitter.fit(rows, verify=False)
        secs = time.time() - t0
        solved = [r.solved for r in res]
        checks = {"file": exact(lm, fitter, res, rows, 64), "alone": exact(lm, fitter, res, rows, 1),
                  "other": exact(other, fitter, res, rows, 64)}
        out = {"precision": dt, "margin": float(margin), "solved": sum(solved),
               "texts": len(rows), "seconds": round(secs, 1),
               "steps_median": statistics.median(r.steps for r in res),
               "row_steps": sum(r.steps for r in res),
               **{f"decoded_{k}": sum(s and x for s, x in zip(solved, v))
                  for k, v in checks.items()},
               "min_margin_solved": round(min((r.margin for r in res if r.solved),
                                              default=float("nan")), 3)}
        print(json.dumps(out), flush=True)
        table.append(out)
    print("\n| fit precision | stop margin | solved | decodes: file | alone | other precision "
          "| median steps | row-steps | seconds |\n|---|---|---|---|---|---|---|---|---|")
    for o in table:
        print(f"| {o['precision']} | {o['margin']} | {o['solved']}/{o['texts']} | "
              f"{o['decoded_file']} | {o['decoded_alone']} | {o['decoded_other']} | "
              f"{o['steps_median']} | {o['row_steps']} | {o['seconds']} |")


if __name__ == "__main__":
    main()
