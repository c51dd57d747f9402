"""Probe: does preconditioning the positional maps on their output side speed up training?

  python docs/research/positional-encoder/precond_probe.py OUT.json steps=300 precond=1

The linear code's gradient for A_i is x_i g^T, g = dL/de. With whitened inputs (model.whiten)
the input side is isotropic; the output side is not: the decoder is far more sensitive to some
directions of e than to others. precond=1 keeps a running covariance C of the g's and steps
A with Adam on G (C + eps I)^(-1/2) (one-sided Shampoo); precond=0 is plain Adam on G, i.e.
encoder.train's step for configs/encoder/positional.yaml with model.whiten=true. Same stream,
batch 16, held-out set (128 texts at N = 8) and lr schedule as encoder.train.
"""
from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import torch

from encoder.config import EncoderConfig
from encoder.core import prepare
from encoder.evaluate import evaluate
from encoder.models import Encoder, pad_batch
from proto import config as C

CFG = {"steps": 300, "precond": 1, "lr": 3e-3, "eps": 1e-3, "every": 10, "batch": 16,
       "config": "configs/encoder/positional.yaml"}


def main(argv) -> int:
    out, cfg = Path(argv[0]), dict(CFG)
    for a in argv[1:]:
        k, v = a.split("=", 1)
        cfg[k] = type(cfg[k])(v)
    ecfg = C.load(EncoderConfig, cfg["config"], ["model.whiten=true", "data.eval_texts=128",
                                                  "out=/tmp/precond-probe"])
    setup = prepare(ecfg)
    torch.manual_seed(0)
    enc = Encoder(ecfg.model, setup.lm, setup.offset, setup.m)
    A = enc.pmap.A
    opt = torch.optim.Adam([A], lr=cfg["lr"])
    d = A.shape[-1]
    cov, root = torch.zeros(d, d), torch.eye(d)
    t0 = time.time()
    for step in range(cfg["steps"]):
        exs = setup.split.micro_batch(step, 0, 0, 1, cfg["batch"], 1)
        ids, mask = pad_batch([x.token_ids for x in exs], "cpu")
        e = enc({"ids": ids, "mask": mask, "texts": []})
        e.retain_grad()
        loss, acc = setup.decoder.loss(e, setup.m, [x.token_ids for x in exs])
        opt.zero_grad()
        loss.backward()
        if cfg["precond"]:
            g = e.grad.detach()
            cov.mul_(0.95).add_(g.T @ g / len(g), alpha=0.05)
            if step % cfg["every"] == 0:
                vals, vecs = torch.linalg.eigh(cov.double())
                floor = cfg["eps"] * vals.max().clamp(min=1e-30)
                root = ((vecs * (vals.clamp(min=0) + floor).rsqrt()) @ vecs.T).float()
            A.grad = A.grad @ root
        warm = min(1.0, (step + 1) / 10)
        frac = step / max(1, cfg["steps"] - 10)
        opt.param_groups[0]["lr"] = cfg["lr"] * warm * (0.1 + 0.9 * 0.5 * (1 + math.cos(
            math.pi * min(1.0, frac))))
        torch.nn.utils.clip_grad_norm_([A], 1.0)
        opt.step()
        if step % 50 == 0:
            print(f"step {step} loss {loss.item():.3f} acc {acc.mean().item():.3f} "
                  f"{time.time() - t0:.0f} s", flush=True)
    enc.eval()
    res = evaluate(enc, setup, setup.split.eval_set(128))
    row = {**cfg, "heldout_acc": res["encoder"]["all"]["acc"],
           "by_source": {k: v["acc"] for k, v in res["encoder"].items()},
           "seconds": round(time.time() - t0, 1)}
    out.write_text(json.dumps(row, indent=1))
    print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
