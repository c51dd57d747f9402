"""Probe: how far the positional encoder family goes with far more texts than a CPU can train
on: held-out accuracy against texts seen for the linear code at N = 8, 16, 32, 64 and for the
contextual residual, each run time-boxed, on one accelerator.

  python docs/research/encoder/gpu_positional.py MODEL OUTDIR [key=value ...]
  .venv/bin/python docs/research/encoder/gpu_positional.py tiny-random /tmp/gpupos \\
      plan=tiny budget=60                    # tiny CPU run (the in-process test model), ~1 min
  .venv/bin/python docs/research/encoder/gpu_positional.py smollm2-135m /tmp/gpupos \\
      plan=cpu budget=300                    # the real model on a CPU, a few steps per run

MODEL is an alias, a model dir or a .gguf file. For a .gguf copy of the default model's GGUF,
`alias=smollm2-135m state_sha256=...` (the `state_sha256` of the fp32 weights, printed by a run
on the alias) checks that the weights are the alias's bit for bit and gives the model the
alias's identity, so the shipped learned start and encoder files apply to it.

Each run trains `Encoder(kind=positional)` with Adam on the decode loss (the frozen decoder in
bf16 on CUDA), batches of `batch` texts, half training prose windows and half random tokens at
the prose's frequencies (data_gen.stream, seed 0, 10 % of contexts held out as in the encoder
configs), and scores the fixed held-out prose windows and random token sequences of its
lengths at log-spaced points. Every point is a line of OUTDIR/results.jsonl; runs named in
`save` write OUTDIR/enc-NAME.pt (a protospace encoder file, weights in bf16).
"""
from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from data_gen.stream import StreamConfig, TextStream
from encoder import checkpoint as ckpt
from encoder.config import DataConfig, EncoderConfig, ModelConfig, TrainConfig
from encoder.core import learned_start
from encoder.data import context_held_out
from encoder.losses import Decoder
from encoder.models import Encoder
from proto.arrangement import Arrangement, prefix_ids
from proto.models import state_sha256, load_model

# name, lengths, model overrides, share of the budget (after the lr sweep)
PLANS = {
    "full": [("lin8", [8], {}, 0.22), ("lin16", [16], {}, 0.22),
             ("res8", [8], {"residual_layers": 2}, 0.22),
             ("lin32", [32], {}, 0.14), ("lin64", [64], {}, 0.14)],
    "long": [("lin8-long", [8], {}, 0.5), ("lin16-long", [16], {}, 0.5)],
    "cpu": [("lin8", [8], {}, 0.5), ("res8", [8], {"residual_layers": 2}, 0.5)],
    "tiny": [("lin8", [8], {}, 0.4), ("res8", [8], {"residual_layers": 1}, 0.3),
             ("lin16", [16], {}, 0.3)],
}
CFG = {"plan": "full", "budget": 420.0, "batch": 512, "lr": 0.0, "lrs": "1e-3,3e-3,1e-2",
       "sweep_seconds": 15.0, "eval_texts": 512, "save": "lin8,lin16,res8", "alias": "",
       "state_sha256": "", "weights_sha256": "", "prose_sources": "britannica,plays"}


def parse(argv):
    cfg = dict(CFG)
    for a in argv:
        k, v = a.split("=", 1)
        if k not in cfg:
            sys.exit(f"unknown key {k}; keys: {sorted(cfg)}")
        cfg[k] = type(cfg[k])(v)
    return cfg


def load(model: str, cfg: dict):
    lm = load_model(model, dtype="float32", verbose=False)
    if cfg["alias"]:
        got = state_sha256(lm.model)
        if got != cfg["state_sha256"]:
            sys.exit(f"weights differ from {cfg['alias']}'s: {got}")
        lm.name, lm.weights_sha256 = cfg["alias"], cfg["weights_sha256"]
    if lm.device.type == "cuda":
        lm.model.to(torch.bfloat16)
        lm.dtype = torch.bfloat16
    return lm


def batch_of(stream, n, size, step):
    half = size // 2
    ids = np.concatenate([stream.batch_ids("prose", n, half, str(step)),
                          stream.batch_ids("tokens", n, size - half, str(step))])
    return torch.from_numpy(ids).long()


class Run:
    """One encoder, its optimiser and its held-out sets."""

    def __init__(self, name, lengths, over, lm, dec, stream, e0, m0, cfg):
        self.name, self.lengths, self.lm, self.dec, self.stream = name, lengths, lm, dec, stream
        self.m0, self.cfg = m0.to(lm.device), cfg
        self.mcfg = ModelConfig(kind="positional", positions=max(lengths), **over)
        torch.manual_seed(0)
        self.enc = Encoder(self.mcfg, lm, e0, m0).to(lm.device)
        self.step, self.texts = 0, 0
        self.held = {(k, n): [t.token_ids for t in stream.heldout(k, n, cfg["eval_texts"])]
                     for k in ("prose", "tokens") for n in lengths}

    def optimiser(self, lr):
        self.opt = torch.optim.Adam([p for p in self.enc.parameters() if p.requires_grad], lr=lr)
        self.lr = lr

    def loss(self, ids):
        ids = ids.to(self.lm.device)
        e = self.enc({"ids": ids, "mask": torch.ones_like(ids)})
        logits = self.dec.logits(e, self.m0, ids.shape[1])
        return F.cross_entropy(logits.transpose(1, 2), ids)

    def train_step(self, frac: float):
        """One Adam step; frac = the share of the run's time spent (the lr decays by time)."""
        n = self.lengths[self.step % len(self.lengths)]
        warm = min(1.0, (self.step + 1) / 20)
        decay = 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, frac)))
        for g in self.opt.param_groups:
            g["lr"] = self.lr * warm * decay
        loss = self.loss(batch_of(self.stream, n, self.cfg["batch"], self.step))
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.step += 1
        self.texts += self.cfg["batch"]
        return loss.item()

    @torch.no_grad()
    def evaluate(self) -> dict:
        out = {}
        for (kind, n), toks in self.held.items():
            ids = torch.tensor(toks, dtype=torch.long, device=self.lm.device)
            hits = []
            for s in range(0, len(ids), 256):
                part = ids[s: s + 256]
                e = self.enc({"ids": part, "mask": torch.ones_like(part)})
                hits.append((self.dec.logits(e, self.m0, n).argmax(-1) == part).float())
            h = torch.cat(hits)
            out[f"{kind}{n}_acc"] = round(h.mean().item(), 4)
            out[f"{kind}{n}_exact"] = round((h.mean(1) == 1).float().mean().item(), 4)
        return out


def train(run: Run, seconds: float, log, out: Path | None = None):
    t0, next_eval, last = time.time(), 1, None
    while time.time() - t0 < seconds:
        last = run.train_step((time.time() - t0) / seconds)
        if run.step >= next_eval:
            log({"run": run.name, "step": run.step, "texts": run.texts, "lr": run.lr,
                 "seconds": round(time.time() - t0, 1), "loss": round(last, 4),
                 **run.evaluate()})
            next_eval = max(next_eval + 1, int(next_eval * 1.6))
    row = {"run": run.name, "step": run.step, "texts": run.texts, "lr": run.lr,
           "seconds": round(time.time() - t0, 1), "loss": last, "final": True, **run.evaluate()}
    log(row)
    return row


def save(run: Run, lm, dec, out: Path, row: dict):
    ecfg = EncoderConfig(out=str(out / f"enc-{run.name}"), llm=lm.name, m="start",
                         model=run.mcfg, data=DataConfig(stream=StreamConfig(prose=1, tokens=1),
                                                         lengths=run.lengths),
                         train=TrainConfig(steps=run.step, global_batch=run.cfg["batch"],
                                           micro_batch=run.cfg["batch"], lr=run.lr,
                                           head_lr=run.lr))
    run.enc.cpu()
    for k, p in run.enc.named_parameters():
        if p.requires_grad:
            p.data = p.data.to(torch.bfloat16)   # half the bytes; loads back into fp32
    ckpt.save(out / f"enc-{run.name}.pt", run.enc, ecfg, lm, dec, run.lengths, None, run.step,
              {f"gpu/{k}": v for k, v in row.items() if k.endswith(("_acc", "_exact"))})


def main(argv) -> int:
    model, outdir, cfg = argv[0], Path(argv[1]), parse(argv[2:])
    outdir.mkdir(parents=True, exist_ok=True)
    t_start = time.time()
    deadline = t_start + cfg["budget"]
    lm = load(model, cfg)
    dec = Decoder.of(lm, Arrangement("e_m", prefix_ids(lm.tokenizer, "sink")))
    start = learned_start(lm)
    e0, m0 = start if start else (torch.zeros(lm.d_model), torch.zeros(lm.d_model))
    plan = PLANS[cfg["plan"]]
    lengths = sorted({n for _, ls, _, _ in plan for n in ls})
    dcfg = DataConfig(stream=StreamConfig(prose=1, tokens=1,
                                          prose_sources=cfg["prose_sources"].split(",")))
    stream = TextStream(dcfg.stream, lm.tokenize, lm.detokenize, 0,
                        lambda cid: context_held_out(cid, dcfg), lengths,
                        lm.model.get_input_embeddings().weight.shape[0])
    fh = (outdir / "results.jsonl").open("a")

    def log(row):
        row["wall"] = round(time.time() - t_start, 1)
        print(json.dumps(row), flush=True)
        fh.write(json.dumps(row) + "\n")
        fh.flush()
    log({"event": "start", "device": str(lm.device), "dtype": str(lm.dtype), "cfg": cfg,
         "model": lm.identity, "gpu": torch.cuda.get_device_name() if lm.device.type == "cuda"
         else ""})
    lr = cfg["lr"]
    if not lr:  # the first run's lr sweep: the best held-out prose accuracy after a few seconds
        best = None
        for cand in (float(x) for x in cfg["lrs"].split(",")):
            name, ls, over, _ = plan[0]
            r = Run(f"sweep-{cand:g}", ls, over, lm, dec, stream, e0, m0, cfg)
            r.optimiser(cand)
            row = train(r, cfg["sweep_seconds"], log)
            score = (row[f"prose{ls[0]}_acc"] + row[f"tokens{ls[0]}_acc"], -row["loss"])
            best = max(best or (score, cand), (score, cand))
            del r
        lr = best[1]
        log({"event": "lr", "lr": lr})
    left = deadline - time.time()
    for name, ls, over, share in plan:
        secs = min(share * left, deadline - time.time() - 10)
        if secs < 5:
            log({"event": "skipped", "run": name})
            continue
        try:
            r = Run(name, ls, over, lm, dec, stream, e0, m0, cfg)
            r.optimiser(lr)
            row = train(r, secs, log)
            if name in cfg["save"].split(","):
                save(r, lm, dec, outdir, row)
        except Exception as exc:  # a failed run must not cost the others' results
            log({"event": "failed", "run": name, "error": f"{type(exc).__name__}: {exc}"})
        finally:
            if lm.device.type == "cuda":
                torch.cuda.empty_cache()
    log({"event": "done"})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
