"""Train a text -> e encoder on the DeepSpeed engine, judged by one-pass decoding.

  python -m data_gen.build --config configs/data_gen/tiny.yaml threads=1   # the tiny corpus
  python -m encoder.train --config configs/encoder/tiny.yaml           # tiny CPU run, ~30 s
  python -m encoder.train --config configs/encoder/default.yaml        # SmolLM2, a 2-core CPU
  deepspeed --num_gpus 2 --module encoder.train --config configs/encoder/default.yaml
  torchrun --nproc_per_node 2 -m encoder.train --config configs/encoder/default.yaml
      # 2 ranks (on a CPU: 2 gloo processes); the global batch stays train.global_batch
  python -m encoder.train --config configs/encoder/default.yaml train.steps=400   # resume, go on

One process runs as rank 0 of 1 (MASTER_ADDR/PORT set here when no launcher did). Under a
launcher, RANK, WORLD_SIZE and LOCAL_RANK come from the environment; the `--local_rank N` that
deepspeed passes (unless run with --no_local_rank) is accepted and sets LOCAL_RANK where the
environment lacks it. On GPUs each rank runs on cuda:LOCAL_RANK. The DeepSpeed JSON
(`train.deepspeed`) holds ZeRO stage, precision and the rest; the batch numbers come from this
config: the micro-batch per rank is the largest one up to train.micro_batch that splits
train.global_batch evenly over the ranks, and accumulation = global / (micro x ranks), so one
config runs on 1, 2, 4 or 8 ranks (a global batch the ranks cannot split is refused). Only the
encoder's trainable weights are in the optimizer; the frozen decoder gets no gradients.

A background thread draws, tokenises and pads the next `data.prefetch` micro-batches while the
device works on the current one; a batch is fixed by its step and position alone, so prefetching
changes when a batch is made, never which, and a resumed run picks the feed up at its step.

The lr follows a warmup and a cosine to train.min_lr_ratio at train.steps, or, with a time
box (train.max_minutes), at the step the box is expected to reach at the speed of the first
steps; training stops when the box is spent, and a rerun continues the box where it stood.

Every `save_every` steps (and at the end) the train state (weights, optimizer, schedule, the
step, which fixes the data position) goes to OUT/ckpt and the portable encoder to
OUT/encoder.pt. Rerunning the same command resumes from there; a run in OUT with another
config is refused. A NaN loss stops the run before the step is applied, keeping the last
checkpoint (exit 2). The last stdout line is JSON: eval/one_pass_acc, eval/exact_match,
eval/knn_acc, ..., checkpoint, steps, seconds. Rank 0 also writes it to OUT/summary.json (and
to FILE with --summary FILE): under a launcher, the launcher's own lines follow it on stdout.
"""
from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist

from proto import config as C, config as PC
from proto.fit import row_seed
from proto.io import atomic_write_bytes, atomic_write_json
from proto.progress import bar
from proto.tracking import free_port, run as mlflow_run

from . import checkpoint as ckpt
from .config import EncoderConfig
from .core import EncoderError, device_for, prepare
from .evaluate import evaluate, flat_metrics, table
from .losses import nearest_targets, regress_loss, unrolled
from .models import Encoder, pad_batch
from .plots import learning_curve
from .prefetch import Ahead

# config fields that may differ between a run and its resumption
VOLATILE = {"train.stop_after", "train.resume", "train.steps", "mlflow", "threads", "device",
            "train.eval_every", "train.save_every", "data.prefetch"}


# steps timed, after the first, before a time box sets the lr schedule's horizon
PROBE = 5


# config fields added after runs were written, with the value that does what those runs did:
# a run without them in its run.json resumes as before
ADDED = {"train.max_minutes": 0.0, "train.e_noise": 0.0}


class NaNLoss(RuntimeError):
    pass


class Cosine:
    """The lr factor: linear warmup, then a cosine down to min_ratio at step `horizon` (the
    formula of transformers' cosine-with-min-lr schedule). An object, so that LambdaLR's state,
    which DeepSpeed checkpoints, keeps a horizon set by a time box; None holds the peak until
    the box's speed is measured."""

    def __init__(self, warmup: int, horizon: int | None, min_ratio: float):
        self.warmup, self.horizon, self.min_ratio = warmup, horizon, min_ratio

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return step / max(1, self.warmup)
        if self.horizon is None:
            return 1.0
        progress = min(1.0, (step - self.warmup) / max(1, self.horizon - self.warmup))
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)) * (1 - self.min_ratio)
                   + self.min_ratio)


def init_distributed(device: str) -> tuple[int, int]:
    """(rank, world); a process started without a launcher becomes rank 0 of 1."""
    # before deepspeed's import, which picks its accelerator once per process
    os.environ.setdefault("DS_ACCELERATOR", "cuda" if device.startswith("cuda") else "cpu")
    import deepspeed  # lazy: deepspeed's import costs seconds and probes accelerators
    if not dist.is_initialized():
        alone = "WORLD_SIZE" not in os.environ
        for k, v in (("RANK", "0"), ("WORLD_SIZE", "1"), ("LOCAL_RANK", "0"),
                     ("MASTER_ADDR", "127.0.0.1")):
            os.environ.setdefault(k, v)
        os.environ.setdefault("MASTER_PORT", str(free_port()))
        # a process alone meets itself through a file, not a port: a free port found here can
        # be taken by another process before the store binds it
        kw = ({"init_method": f"file://{tempfile.mkdtemp(prefix='protospace-rdzv-')}/store",
               "rank": 0, "world_size": 1} if alone else {})
        with contextlib.redirect_stdout(sys.stderr):  # DeepSpeed reports its CPU comm build
            deepspeed.init_distributed(
                dist_backend="nccl" if device.startswith("cuda") else "gloo", verbose=False,
                **kw)
    return dist.get_rank(), dist.get_world_size()


def rank_device(cfg_device: str) -> str:
    """This process's device. DeepSpeed's engine puts itself on cuda:LOCAL_RANK, so the
    decoder must sit there too: a bare `cuda` means that GPU, another index is refused."""
    dev = device_for(cfg_device)
    if not dev.startswith("cuda"):
        return dev
    if not torch.cuda.is_available():
        raise EncoderError(f"device={dev}, but torch sees no GPU here")
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if dev not in ("cuda", f"cuda:{local}"):
        raise EncoderError(f"device={dev}, but DeepSpeed puts local rank {local}'s engine on "
                           f"cuda:{local}: leave device empty, or choose GPUs with "
                           f"CUDA_VISIBLE_DEVICES")
    # before the process group and the model load, so that `cuda` is this rank's GPU
    torch.cuda.set_device(local)
    return f"cuda:{local}"


def ds_config(cfg: EncoderConfig, world: int) -> dict:
    path = Path(cfg.train.deepspeed)
    if not path.is_absolute() and not path.exists():
        # the shipped configs/deepspeed/*.json, also when running from another directory
        path = Path(__file__).resolve().parents[1] / path
    try:
        ds = json.loads(path.read_text())
    except OSError:
        raise EncoderError(f"DeepSpeed config {path} not found") from None
    except ValueError as exc:
        raise EncoderError(f"DeepSpeed config {path} is not JSON: {exc}") from None
    if "auto" in json.dumps(ds):
        raise EncoderError(f"DeepSpeed config {path} has 'auto' values (only the HF Trainer "
                           f"fills those): give numbers")
    t = cfg.train
    micro, accum = batch_plan(t.global_batch, t.micro_batch, world)
    ds.update({"train_batch_size": t.global_batch, "train_micro_batch_size_per_gpu": micro,
               "gradient_accumulation_steps": accum, "gradient_clipping": t.clip})
    return ds


def batch_plan(global_batch: int, micro_max: int, world: int) -> tuple[int, int]:
    """(micro-batch per rank, accumulation steps): the largest micro-batch <= micro_max that
    splits the global batch evenly over the ranks, so one config runs at any world size that
    divides its global batch (the data position of a step depends on the global batch only)."""
    if global_batch % world:
        raise EncoderError(
            f"train.global_batch {global_batch} does not split over {world} ranks: at "
            f"{world} ranks give a multiple of {world} (e.g. {_near_multiples(global_batch, world)}"
            f"), or run {global_batch} on {_divisors(global_batch)} ranks")
    per_rank = global_batch // world
    micro = max(m for m in range(1, min(micro_max, per_rank) + 1) if per_rank % m == 0)
    return micro, per_rank // micro


def _near_multiples(n: int, k: int) -> str:
    low, high = n // k * k, (n // k + 1) * k
    return f"{low} or {high}" if low else str(high)


def _divisors(n: int, show: int = 8) -> str:
    ds = [d for d in range(1, n + 1) if n % d == 0]
    return ", ".join(map(str, ds[:show])) + (", ..." if len(ds) > show else "")


def content(cfg: EncoderConfig) -> dict:
    flat = C.flatten(C.to_dict(cfg))
    return {k: v for k, v in flat.items() if k not in VOLATILE}


def check_out(cfg: EncoderConfig) -> int | None:
    """The step to resume from (None: fresh). Refuses a directory holding another run."""
    out = Path(cfg.out)
    saved = out / "run.json"
    if not saved.exists():
        if out.exists() and any(out.iterdir()):
            raise EncoderError(f"{out} exists and is not an encoder run: choose another out")
        return None
    info = json.loads(saved.read_text())
    info["content"] = {**ADDED, **info["content"]}
    now = json.loads(json.dumps(content(cfg)))  # as run.json holds it (tuples become lists)
    if info.get("content") != now:
        diff = sorted(k for k in set(info["content"]) | set(now)
                      if info["content"].get(k) != now.get(k))
        raise EncoderError(f"{out} holds a run with another config ({', '.join(diff[:4])}): "
                           f"choose another out, or delete it yourself")
    if not cfg.train.resume:
        raise EncoderError(f"{out} holds a run and train.resume is false")
    return info.get("step", 0)


def start_from(enc, cfg: EncoderConfig, lm) -> None:
    """Load cfg.init_from's trained weights into a fresh encoder of the same model config."""

    blob = ckpt.read(cfg.init_from)
    if blob["llm"]["weights_sha256"] != lm.weights_sha256:
        raise EncoderError(f"init_from {blob['path']} belongs to decoder {blob['llm']['name']}")
    theirs, ours = dict(blob["config"]["model"]), PC.to_dict(cfg.model)
    grow = theirs.get("positions", 0) < ours.get("positions", 0) and ours["kind"] == "positional"
    if grow:
        theirs["positions"] = ours["positions"]
    if theirs != ours:
        raise EncoderError(f"init_from {blob['path']} has another model config than this run")
    if grow:
        blob = dict(blob, state=grown_state(blob["state"], enc.trainable_state()))
    ckpt.load_state(enc, blob)


def grown_state(state: dict, target: dict) -> dict:
    """A positional encoder's weights for more positions: its per-position tensors fill the
    first rows of this run's, the new positions start at their init. Output position i reads
    only e, m and i (the decoder is causal), so a code learnt for positions 1..n stays valid
    for the first n tokens of a longer text."""

    out = {}
    for k, v in state.items():
        t = target.get(k)
        if t is not None and t.shape != v.shape and t.shape[1:] == v.shape[1:] \
                and t.shape[0] > v.shape[0]:
            v = torch.cat([v.to(t.dtype), t[v.shape[0]:].detach().cpu().to(t.dtype)])
        out[k] = v
    return out


def batch_inputs(examples, device) -> dict:
    ids, mask = pad_batch([x.token_ids for x in examples], device)
    return {"ids": ids, "mask": mask, "texts": [x.text for x in examples]}


def to_device(inputs: dict, device) -> dict:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v
            for k, v in inputs.items()}


def no_phase(name: str):
    return contextlib.nullcontext()


def micro_loss(engine, setup, cfg: EncoderConfig, examples, inputs: dict | None = None,
               phase=no_phase) -> tuple[torch.Tensor, dict]:
    """The loss of one micro-batch and its parts (decode CE, accuracy, regress distance).
    `inputs`: the batch's padded tensors if already made (on any device); `phase(name)`: a
    context that times the encoder and decoder parts (the benchmark's)."""
    enc = engine.module
    with phase("encoder_forward"):
        inputs = inputs or batch_inputs(examples, "cpu")
        e = engine(to_device(inputs, setup.lm.device)).float()
    with phase("decoder_forward"):
        return _decoder_loss(enc, setup, cfg, examples, e)


def noise_on_e(cfg: EncoderConfig, examples, e: torch.Tensor) -> torch.Tensor:
    """train.e_noise's Gaussian noise for a micro-batch, a function of the seed and the texts
    (so a resumed or relaunched run draws the same noise; ranks and devices too)."""
    key = "|".join(x.text_id for x in examples)
    gen = torch.Generator().manual_seed(row_seed(cfg.seed, key, 0, "e_noise"))
    z = torch.randn(e.shape, generator=gen, dtype=torch.float32)
    return (cfg.train.e_noise * z).to(e.device, e.dtype)


def _decoder_loss(enc, setup, cfg: EncoderConfig, examples, e) -> tuple[torch.Tensor, dict]:
    m = enc.m if enc.m is not None else setup.m
    parts, loss = {}, e.new_zeros(())
    if cfg.loss.kind in ("decode", "mix"):
        e_dec = e + noise_on_e(cfg, examples, e) if cfg.train.e_noise and enc.training else e
        with enc.decoding():
            dec, acc = setup.decoder.loss(e_dec, m, [x.token_ids for x in examples],
                                          cfg.loss.focal_gamma)
        w = cfg.loss.decode_weight if cfg.loss.kind == "mix" else 1.0
        loss = loss + w * dec
        parts.update({"decode": dec.item(), "acc": acc.mean().item()})
        t = cfg.train
        if t.unroll_steps:
            with enc.decoding():
                dec_k, _, acc_k = unrolled(setup.decoder, e, m, [x.token_ids for x in examples],
                                           t.unroll_steps, t.unroll_lr)
            loss = loss + t.unroll_weight * dec_k
            parts.update({"unrolled": dec_k.item(), "unrolled_acc": acc_k.mean().item()})
    if cfg.loss.kind == "nearest":
        with enc.decoding():
            z, acc, z_acc = nearest_targets(setup.decoder, e, m, [x.token_ids for x in examples],
                                            cfg.loss.nearest_steps, cfg.loss.nearest_lr)
        loss = regress_loss(e, [z[i: i + 1] for i in range(len(z))], cfg.loss.regress_metric)
        parts.update({"nearest": loss.item(), "acc": acc.mean().item(),
                      "nearest_acc": z_acc.mean().item()})
    if cfg.loss.kind in ("regress", "mix"):
        tg = [None if x.targets is None else torch.from_numpy(x.targets) for x in examples]
        reg = regress_loss(e, tg, cfg.loss.regress_metric)
        if reg is not None:
            w = cfg.loss.regress_weight if cfg.loss.kind == "mix" else 1.0
            loss = loss + w * reg
            parts["regress"] = reg.item()
    return loss, parts


def _reduce_mean(values: dict, world: int, device) -> dict:
    keys = sorted(values)
    # on the ranks' device: NCCL reduces no CPU tensors
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
    if world > 1:
        dist.all_reduce(t)
        t /= world
    return dict(zip(keys, t.tolist()))


class Trainer:
    """One training run: setup, engine, loop, checkpoints, evaluation and logging."""

    def __init__(self, cfg: EncoderConfig, lm=None, log=None):
        self.cfg, self.log = cfg, log or (lambda s: print(s, file=sys.stderr, flush=True))
        self.lm = lm
        self.phase = no_phase   # eval.bench_encoder times the parts of a step through it
        self.feed, self.feed_next = None, None
        self.feed_end = None    # the step the feed stops before (None: endless)

    def build(self):
        cfg = self.cfg
        self.rank, self.world = init_distributed(rank_device(cfg.device))
        import deepspeed  # lazy, and after init_distributed has chosen DeepSpeed's accelerator
        self.resume_step = check_out(cfg)
        self.ds = ds_config(cfg, self.world)
        self.setup = prepare(cfg, self.lm)
        torch.manual_seed(cfg.seed)  # the same initial encoder on every rank
        enc = Encoder(cfg.model, self.setup.lm, self.setup.offset, self.setup.m,
                      train_m=cfg.m == "learned").to(self.setup.lm.device)
        if cfg.init_from and self.resume_step is None:
            start_from(enc, cfg, self.setup.lm)
        opt = torch.optim.AdamW(enc.param_groups(cfg.train.lr, cfg.train.head_lr,
                                                 cfg.train.weight_decay))
        t = cfg.train
        self.cosine = Cosine(t.warmup_steps, None if t.max_minutes else t.steps, t.min_lr_ratio)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, self.cosine)
        with contextlib.redirect_stdout(sys.stderr):  # DeepSpeed prints its config
            self.engine, _, _, _ = deepspeed.initialize(model=enc, optimizer=opt,
                                                        lr_scheduler=sched, config=self.ds)
        self.accum = self.ds["gradient_accumulation_steps"]
        self.micro = self.ds["train_micro_batch_size_per_gpu"]
        if self.rank == 0:
            self.log(f"batch: {cfg.train.global_batch} texts a step = micro-batch {self.micro} "
                     f"x {self.accum} accumulation x {self.world} ranks")
        self.step, self.box_before = 0, 0.0
        if self.resume_step is not None:
            with contextlib.redirect_stdout(sys.stderr):
                _, client = self.engine.load_checkpoint(str(Path(cfg.out) / "ckpt"),
                                                        load_module_strict=False)
            self.step = int((client or {}).get("step", 0))
            self.box_before = float((client or {}).get("box_seconds", 0.0))
            if not t.max_minutes:  # train.steps may grow on a resume ("go on")
                self.cosine.horizon = t.steps
        self.first_step, self.box_spent = self.step, self.box_before
        self.eval_set = self.setup.split.eval_set(cfg.data.eval_texts)
        self.baselines = None
        self.last_res = None
        self.history = self._read_history()

    # ------------------------------------------------------------ bookkeeping
    def _read_history(self) -> dict:
        p = Path(self.cfg.out) / "history.json"
        h = json.loads(p.read_text()) if p.exists() else {"train": [], "eval": []}
        # a resumed run forgets what came after its checkpoint (that part is redone)
        h["train"] = [r for r in h["train"] if r["step"] <= self.step]
        h["eval"] = [r for r in h["eval"] if r["step"] <= self.step]
        return h

    def save(self, metrics: dict | None = None):

        out = Path(self.cfg.out)
        with contextlib.redirect_stdout(sys.stderr):
            self.engine.save_checkpoint(str(out / "ckpt"), tag=f"step{self.step}",
                                        client_state={"step": self.step,
                                                      "box_seconds": self.box_spent},
                                        exclude_frozen_parameters=True)
        if self.rank == 0:
            ckpt.save(out / "encoder.pt", self.engine.module, self.cfg, self.setup.lm,
                      self.setup.decoder, self.setup.lengths, self.setup.corpus, self.step,
                      metrics)
            atomic_write_json(out / "history.json", self.history)
            atomic_write_bytes(out / "config.yaml", C.dump_yaml(self.cfg).encode())
            atomic_write_json(out / "run.json", {"content": content(self.cfg), "step": self.step,
                                                 "world": self.world})
            self._prune(out / "ckpt")

    def _prune(self, root: Path, keep: int = 2):
        tags = sorted((p for p in root.glob("step*") if p.is_dir()),
                      key=lambda p: int(p.name[4:]))
        for p in tags[:-keep]:
            shutil.rmtree(p, ignore_errors=True)

    def evaluate(self) -> dict:
        enc = self.engine.module
        enc.eval()
        res = evaluate(enc, self.setup, self.eval_set, baselines=self.baselines)
        enc.train()
        self.baselines = {k: v for k, v in res.items() if k != "encoder"}
        self.last_res = (self.step, res)
        return res, flat_metrics(res)

    # ------------------------------------------------------------ the data feed
    def make_batch(self, key: tuple[int, int]) -> tuple[list, dict]:
        """Micro-batch `micro` of step `step` on this rank: its examples and padded tensors
        (on the CPU, pinned for a GPU so that the copy overlaps compute)."""
        step, micro = key
        exs = self.setup.split.micro_batch(step, micro, self.rank, self.world, self.micro,
                                           self.accum)
        inputs = batch_inputs(exs, "cpu")
        if self.setup.lm.device.type == "cuda":
            inputs = {k: v.pin_memory() if torch.is_tensor(v) else v for k, v in inputs.items()}
        return exs, inputs

    def next_batch(self, micro: int) -> tuple[list, dict]:
        """The batch at (self.step, micro), from the feed of batches prepared ahead; a feed
        that is elsewhere (the step was moved by hand) restarts here, so the batch is always
        the one the position fixes."""
        key = (self.step, micro)
        if self.feed is None or self.feed_next != key:
            self.close_feed()
            # no further than the run goes: the texts drawn are the texts trained on
            steps = (itertools.count(self.step) if self.feed_end is None else
                     range(self.step, max(self.feed_end, self.step + 1)))
            keys = ((s, m) for s in steps for m in range(self.accum) if (s, m) >= key)
            self.feed = Ahead(self.make_batch, keys, self.cfg.data.prefetch)
        got, batch = next(self.feed)
        step, m = got
        self.feed_next = (step, m + 1) if m + 1 < self.accum else (step + 1, 0)
        return batch

    def close_feed(self):
        if self.feed is not None:
            self.feed.close()
        self.feed, self.feed_next = None, None

    # ------------------------------------------------------------ the loop
    def train_step(self) -> dict:
        sums: dict = {}
        bad = 0.0
        for micro in range(self.accum):
            with self.phase("data_wait"):
                exs, inputs = self.next_batch(micro)
            loss, parts = micro_loss(self.engine, self.setup, self.cfg, exs, inputs, self.phase)
            parts["loss"] = loss.item()
            if not math.isfinite(parts["loss"]):
                bad = 1.0
                loss = torch.nan_to_num(loss, nan=0.0, posinf=0.0, neginf=0.0)
            with self.phase("backward"):
                self.engine.backward(loss)
            if micro < self.accum - 1:
                with self.phase("optimizer"):
                    self.engine.step()
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + v / self.accum
        flag = torch.tensor([bad], device=self.setup.lm.device)
        if self.world > 1:
            dist.all_reduce(flag)
        if flag.item() > 0:
            raise NaNLoss(f"non-finite loss at step {self.step + 1}")
        with self.phase("optimizer"):
            self.engine.step()
        self.step += 1
        return _reduce_mean(sums, self.world, self.setup.lm.device)

    def run(self) -> dict:
        t0 = time.time()
        self.build()
        cfg = self.cfg
        stop = min(cfg.train.steps, cfg.train.stop_after or cfg.train.steps)
        self.feed_end = stop
        with mlflow_run("encoder", cfg, run_name=Path(cfg.out).name,
                        enabled=cfg.mlflow and self.rank == 0,
                        params={"deepspeed_resolved": json.dumps(self.ds), "world": self.world,
                                "resumed_from": self.resume_step or 0,
                                "micro_batch_used": self.micro,
                                "grad_accumulation": self.accum}) as mr:
            self._tag(mr)
            summary = self._loop(mr, stop, t0)
        return summary

    def _tag(self, mr):
        try:
            commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                    text=True, timeout=5).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            commit = ""
        corpus = self.setup.corpus or {}
        mr.tags({"stage": "encoder-train", "model": self.setup.lm.name,
                 "encoder_kind": self.cfg.model.kind, "loss": self.cfg.loss.kind,
                 "corpus": corpus.get("path", "raw text"), "git_commit": commit or "unknown"})
        mr.dataset(self.setup.split, corpus.get("path", "raw"))
        mr.text(json.dumps(self.ds, indent=1), "deepspeed.json")

    def _progress(self, stop: int):
        return bar(stop, "encoder", unit="step", initial=self.step)

    def _loop(self, mr, stop: int, t0: float) -> dict:
        cfg = self.cfg
        bar = self._progress(stop)
        seen, t_loop = 0, time.time()
        self.box_spent, self._box_t0 = self.box_before, self.clock()
        try:
            while self.step < min(stop, self.goal()):
                parts = self.train_step()
                self._time_box(mr)
                bar.total = min(stop, self.goal())
                seen += cfg.train.global_batch
                row = {"step": self.step, **{k: round(v, 5) for k, v in parts.items()},
                       "lr": self.engine.get_lr()[0]}
                self.history["train"].append(row)
                mr.metrics({f"train/{k}": v for k, v in parts.items()} | {"train/lr": row["lr"],
                           "train/examples_per_s": seen / (time.time() - t_loop)},
                           step=self.step)
                bar.update(1)
                bar.set_postfix(loss=f"{parts['loss']:.3f}", acc=f"{parts.get('acc', 0):.3f}")
                if self.step % cfg.train.eval_every == 0 or self.step == self.goal():
                    self._eval_point(mr)
                if self.step % cfg.train.save_every == 0 or self.step == min(stop, self.goal()):
                    self.save(self._last_eval())
        except NaNLoss as exc:
            raise EncoderError(f"{exc}; stopped, the last checkpoint in {cfg.out} is kept "
                               f"(step {self._saved_step()})") from None
        finally:
            self.close_feed()
            bar.close()
        return self._finish(mr, t0)

    # ------------------------------------------------------------ the time box
    def clock(self) -> float:
        return time.monotonic()

    def goal(self) -> int:
        """The step the run ends at: train.steps, or the horizon its time box set."""
        h = self.cosine.horizon
        return h if self.cfg.train.max_minutes and h is not None else self.cfg.train.steps

    def _time_box(self, mr):
        """Rank 0's clock decides for every rank. The first step (set-up costs) is left out
        of the speed; PROBE steps after it fix the horizon at the steps the box holds at that
        speed; the box's end moves the horizon to the step reached, so a rerun finds the run
        finished."""
        box = self.cfg.train.max_minutes * 60
        if not box:
            return
        self.box_spent = self._shared(self.box_before + self.clock() - self._box_t0)
        done = self.step - self.first_step
        if done == 1:
            self._probe_from = self.box_spent
        if self.box_spent >= box:
            self.cosine.horizon = self.step
            self._say(f"time box of {self.cfg.train.max_minutes:g} min spent at step {self.step}")
        elif self.cosine.horizon is None and done == PROBE + 1:
            per_step = (self.box_spent - self._probe_from) / PROBE
            more = int((box - self.box_spent) / max(per_step, 1e-9))
            self.cosine.horizon = min(self.cfg.train.steps, self.step + more)
            self._say(f"time box: {per_step:.3g} s a step, the lr schedule ends at step "
                      f"{self.cosine.horizon}")
            mr.metrics({"train/horizon": self.cosine.horizon}, step=self.step)

    def _shared(self, x: float) -> float:
        if self.world == 1:
            return x
        t = torch.tensor([x], dtype=torch.float64, device=self.setup.lm.device)
        dist.broadcast(t, 0)
        return t.item()

    def _say(self, line: str):
        if self.rank == 0:
            self.log(line)

    def _saved_step(self) -> int:
        p = Path(self.cfg.out) / "run.json"
        return json.loads(p.read_text()).get("step", 0) if p.exists() else 0

    def _eval_point(self, mr):
        if self.rank == 0:
            _, metrics = self.evaluate()
            self.history["eval"].append({"step": self.step, **metrics})
            mr.metrics(metrics, step=self.step)
            self.log(f"step {self.step}: held-out one-pass acc "
                     f"{metrics['eval/one_pass_acc']:.3f}, exact {metrics['eval/exact_match']:.3f}"
                     + "".join(f", {k[5:-4]} {v:.3f}" for k, v in metrics.items()
                               if k.endswith("_acc") and "one_pass" not in k))
        if self.world > 1:
            dist.barrier()

    def _last_eval(self) -> dict:
        return self.history["eval"][-1] if self.history["eval"] else {}

    def _finish(self, mr, t0: float) -> dict:
        out = Path(self.cfg.out)
        summary = {"checkpoint": str(out / "encoder.pt"), "steps": self.step,
                   "seconds": round(time.time() - t0, 1), "world": self.world,
                   "finished": self.step >= self.goal()}
        if self.rank == 0:
            metrics = self._last_eval()
            if self.step >= self.goal():
                if self.last_res and self.last_res[0] == self.step:
                    res = self.last_res[1]
                    metrics = flat_metrics(res)
                else:
                    res, metrics = self.evaluate()
                (out / "eval.md").write_text(table(res) + "\n")
                mr.artifact(out / "eval.md")
                mr.metrics(metrics)
            png = learning_curve(self.history, out / "learning_curve.png")
            mr.artifact(png)
            mr.artifact(out / "history.json")
            mr.artifact(out / "encoder.pt", "checkpoint")
            mr.metrics({"train/seconds": summary["seconds"]})
            summary.update({k: round(v, 4) for k, v in metrics.items()
                            if k.startswith("eval/") and "/" not in k[5:]})
            summary.setdefault("eval/knn_acc", None)
            # the summary's stable place: under a launcher stdout ends with the launcher's lines
            atomic_write_json(out / "summary.json", summary)
        return summary


def main(argv=None) -> int:
    cfg = C.parse_cli(EncoderConfig, __doc__, argv, prog="python -m encoder.train")
    if cfg is None:
        return 2
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        trainer = Trainer(cfg)
        summary = trainer.run()
    except EncoderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if trainer.rank == 0:
        C.print_summary(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
