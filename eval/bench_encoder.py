"""Encoder training benchmark: texts/s of a bare step and of encoder.train's own step, side by
side, where a training step's time goes, FLOP utilisation and peak memory.

  python -m eval.bench_encoder                                   # default encoder config
  python -m eval.bench_encoder micro_batch=32 n_tokens=16
  python -m eval.bench_encoder encoder_config=configs/encoder/tiny.yaml n_tokens=6 \\
      micro_batch=4 reps=3 threads=1 mlflow=false                # tiny CPU run (seconds)
  python -m eval.bench_encoder encoder_config=configs/encoder/tiny-positional.yaml \\
      n_tokens=6 micro_batch=4 reps=3 threads=1 mlflow=false     # tiny, on the text stream
  python -m eval.bench_encoder encoder_config=configs/encoder/gpu.yaml micro_batch=256 \\
      n_tokens=16 reps=10                                        # a GPU (target: ratio >= 0.9)

Both loops run in this process on the same device, dtype, encoder and micro-batch of
micro_batch texts of n_tokens tokens (the encoder config's, with data.lengths = [n_tokens] and
one micro-batch a step):
  bare   the encoder's forward, the frozen decoder's forward and backward to its input e (no
         weight gradients for it), a torch AdamW update of the encoder's weights, on one batch
         tokenised and on the device before timing starts
  train  encoder.train's Trainer.train_step, as `python -m encoder.train` runs it (world size
         1): its data stream (drawn, tokenised and padded ahead: data.prefetch), its DeepSpeed
         engine's forward, backward and step, its NaN check and metric reduction
train_over_bare is their texts/s ratio. The train step's breakdown (phase_*_s, seconds a step,
wall clock, CUDA synchronised at each edge, over `reps` more steps): data_wait (for the next
batch), encoder_forward, decoder_forward (the loss through the frozen decoder), backward
(decoder and encoder), optimizer (the engine's step), other (the rest of the step);
data_prepare_s is what a batch costs to make, off the main thread when prefetched
(prefetch=0 makes each batch when the step asks for it, so data_wait shows that cost).

A data.corpus the config names that is not built is left out (raw text only, m: start, or
learned where the decoder ships no start; `data` in the summary says what was read): the
benchmark needs the step's shapes, not the corpus's e's. Its FLOPs are counted from the
operators' shapes (torch.utils.flop_counter) on one bare step; utilisation is that rate against
a dense matmul of the same dtype measured in the same run: the 2048^3 square one, and the
decoder's own widest GEMM shape (micro_batch x positions rows). The train loop runs first, then
the bare one on a second load of the decoder (the engine's module carries ZeRO's gradient hooks
and a LoRA encoder's adapters live in the decoder it reads), so peak memory is reported twice:
train_peak_memory_gib after the train loop alone (what a training run needs), peak_memory_gib
at the end, both decoders resident. Peak memory is the process's peak resident set on a CPU
(models included), torch's peak allocation on CUDA. Last stdout line:
JSON with examples_per_s and step_seconds (the bare step), train_texts_per_s,
train_step_seconds, train_over_bare, phase_*_s, flop_utilisation, peak_memory_gib and
train_peak_memory_gib.
"""
from __future__ import annotations

import collections
import contextlib
import dataclasses
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from encoder.config import EncoderConfig
from encoder.core import (
    EncoderError,
    corpus_record,
    device_for,
    learned_start,
    load_llm,
)
from proto import config as C

from .bench_fit import matmul_rate, timed
from .common import run_command

PHASES = ("data_wait", "encoder_forward", "decoder_forward", "backward", "optimizer")


@dataclasses.dataclass
class BenchEncoderConfig:
    encoder_config: str = "configs/encoder/default.yaml"
    micro_batch: int = 16
    n_tokens: int = 8
    reps: int = 3
    device: str = ""
    threads: int = 0                 # torch CPU threads (0 = torch's default)
    prefetch: int = -1               # the train loop's data.prefetch (-1 = the config's)
    mlflow: bool = True

    def __post_init__(self):
        if min(self.micro_batch, self.n_tokens, self.reps) < 1:
            raise ValueError("micro_batch, n_tokens and reps must be >= 1")
        if self.threads < 0 or self.prefetch < -1:
            raise ValueError("threads must be >= 0, prefetch >= -1")


class Phases:
    """Wall-clock seconds per named part of a step, summed over steps."""

    def __init__(self, device):
        self.cuda = device.type == "cuda"
        self.seconds: dict[str, float] = collections.defaultdict(float)

    def _sync(self):
        if self.cuda:
            torch.cuda.synchronize()

    @contextlib.contextmanager
    def phase(self, name: str):
        self._sync()
        t = time.perf_counter()
        try:
            yield
        finally:
            self._sync()
            self.seconds[name] += time.perf_counter() - t


def train_config(cfg: BenchEncoderConfig, ecfg: EncoderConfig, lm, out: str
                 ) -> tuple[EncoderConfig, str]:
    """The encoder config as the train loop runs it here, and what its data is."""
    d = C.to_dict(ecfg)
    d.update(out=out, mlflow=False, init_from="", device=str(lm.device), threads=cfg.threads)
    d["data"].update(lengths=[cfg.n_tokens], curriculum=[])
    if cfg.prefetch >= 0:
        d["data"]["prefetch"] = cfg.prefetch
    d["train"].update(global_batch=cfg.micro_batch, micro_batch=cfg.micro_batch,
                      steps=10 ** 6, stop_after=0, resume=False)
    corpus = d["data"]["corpus"]
    data = f"corpus {corpus}" if corpus else "raw text"
    if corpus and not (Path(corpus) / "manifest.json").exists():
        d["data"].update(corpus="", extra_corpora=[])
        if not d["data"]["raw"] and not ecfg.data.stream.active:
            d["data"]["raw"] = [{"name": "random-words"}]
        if d["m"] == "corpus":
            d["m"] = "start" if learned_start(lm) is not None else "learned"
        data = f"raw text (corpus {corpus} is not built), m: {d['m']}"
    if ecfg.data.stream.active:
        data += f", stream {ecfg.data.stream.weights()}"
    return C.from_dict(EncoderConfig, d), data


def decoder_llm(ecfg: EncoderConfig, device: str):
    """The frozen decoder as encoder.train loads it for this config."""
    probe = C.from_dict(EncoderConfig, {**C.to_dict(ecfg), "device": device})
    return load_llm(ecfg.llm, device, ecfg.dtype, **corpus_record(probe))


def trainer_for(cfg: BenchEncoderConfig, out: str, log):
    """A built Trainer (engine, data, no MLflow run), what its data is, and its config."""
    from encoder.losses import Decoder
    from encoder.train import Trainer
    from proto.arrangement import Arrangement, prefix_ids
    ecfg = C.load(EncoderConfig, cfg.encoder_config)
    lm = decoder_llm(ecfg, device_for(cfg.device or ecfg.device))
    try:  # before DeepSpeed's set-up, which takes seconds
        Decoder.of(lm, Arrangement("e_m", prefix_ids(lm.tokenizer, "sink"))).check_length(
            cfg.n_tokens, "a text")
    except ValueError as exc:
        raise C.ConfigError(str(exc)) from None
    tcfg, data = train_config(cfg, ecfg, lm, out)
    trainer = Trainer(tcfg, lm=lm, log=log)
    with contextlib.redirect_stdout(sys.stderr):  # the last stdout line stays the summary
        trainer.build()
    return trainer, data, ecfg


def bare_step(trainer, ecfg: EncoderConfig):
    """(the bare loop's step on the trainer's first batch, its encoder, its decoder's model).

    Its encoder is a second one, as the trainer's starts, on a second load of the decoder: the
    engine's own module carries ZeRO's gradient hooks, which a backward outside the engine
    trips, and a LoRA encoder writes its adapters into the decoder it reads."""
    from encoder.losses import Decoder
    from encoder.models import Encoder
    from encoder.train import to_device
    setup, tcfg = trainer.setup, trainer.cfg
    lm = decoder_llm(ecfg, str(setup.lm.device))
    torch.manual_seed(tcfg.seed)
    enc = Encoder(tcfg.model, lm, setup.offset, setup.m,
                  train_m=tcfg.m == "learned").to(lm.device)
    dec = Decoder.of(lm, setup.decoder.arr)
    exs, inputs = trainer.make_batch((0, 0))
    batch, toks = to_device(inputs, lm.device), [x.token_ids for x in exs]
    m = enc.m if enc.m is not None else setup.m.to(lm.device)
    t = tcfg.train
    opt = torch.optim.AdamW(enc.param_groups(t.lr, t.head_lr, 0.0))

    def step():
        e = enc(batch).float()
        with enc.decoding():
            loss, _ = dec.loss(e, m, toks)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step, enc, lm


def breakdown(trainer, reps: int) -> dict:
    """Seconds a train step spends in each phase (mean over reps steps), `other` the rest."""
    from encoder.train import no_phase
    device = trainer.setup.lm.device
    ph = Phases(device)
    trainer.phase = ph.phase
    walls = []
    try:
        for _ in range(reps):
            ph._sync()
            t = time.perf_counter()
            trainer.train_step()
            ph._sync()
            walls.append(time.perf_counter() - t)
    finally:
        trainer.phase = no_phase
    out = {k: ph.seconds.get(k, 0.0) / reps for k in PHASES}
    step = statistics.fmean(walls)
    out["other"] = step - sum(out.values())
    return {"phased_step_seconds": step, **{f"phase_{k}_s": v for k, v in out.items()}}


def peak_gib(device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20  # KiB -> GiB


def bench(cfg: BenchEncoderConfig, log=print) -> dict:
    # lazy: the FLOP counter is needed only by the benchmark
    from torch.utils.flop_counter import FlopCounterMode
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    with tempfile.TemporaryDirectory(prefix="bench-encoder-") as out:
        trainer, data, ecfg = trainer_for(cfg, out, log)
        try:
            return _measure(cfg, trainer, data, ecfg, log, FlopCounterMode)
        finally:
            trainer.close_feed()


def _measure(cfg: BenchEncoderConfig, trainer, data: str, ecfg, log, FlopCounterMode) -> dict:
    train_secs = timed(trainer.train_step, cfg.reps, trainer.setup.lm.device)
    feed = trainer.feed
    busy, made = feed.busy_seconds, feed.made  # past the first batches' cache set-up
    parts = breakdown(trainer, cfg.reps)
    prepare_s = (feed.busy_seconds - busy) / max(1, feed.made - made)
    train_peak = peak_gib(trainer.setup.lm.device)
    step, enc, lm = bare_step(trainer, ecfg)
    step()
    with FlopCounterMode(display=False) as fc:
        step()
    flops = fc.get_total_flops()
    secs = timed(step, cfg.reps, lm.device)
    decoder_grads = sum(p.grad is not None for n, p in lm.model.named_parameters()
                        if "lora_" not in n)
    square = matmul_rate(lm.dtype, lm.device)
    rows = cfg.micro_batch * (cfg.n_tokens + 1)
    shaped = matmul_rate(lm.dtype, lm.device, n=rows, k=lm.d_model, mcols=4 * lm.d_model,
                         reps=20)
    rate = flops / secs
    r = {"model": lm.name, "encoder_kind": enc.cfg.kind, "micro_batch": cfg.micro_batch,
         "n_tokens": cfg.n_tokens, "dtype": lm.precision, "device": str(lm.device),
         "threads": torch.get_num_threads(), "data": data,
         "prefetch": trainer.cfg.data.prefetch,
         "step_seconds": round(secs, 4), "examples_per_s": round(cfg.micro_batch / secs, 2),
         "bare_texts_per_s": round(cfg.micro_batch / secs, 2),
         "train_step_seconds": round(train_secs, 4),
         "train_texts_per_s": round(cfg.micro_batch / train_secs, 2),
         "train_over_bare": round(secs / train_secs, 3),
         **{k: round(v, 5) for k, v in parts.items()},
         "data_prepare_s": round(prepare_s, 5),
         "step_gflop": round(flops / 1e9, 2),
         "achieved_gflops": round(rate / 1e9, 2), "matmul_gflops": round(square / 1e9, 2),
         "gemm_shape_gflops": round(shaped / 1e9, 2),
         "flop_utilisation": round(rate / square, 3),
         "flop_utilisation_vs_gemm_shape": round(rate / shaped, 3),
         "peak_memory_gib": round(peak_gib(lm.device), 2),
         "train_peak_memory_gib": round(train_peak, 2), "decoder_weight_grads": decoder_grads,
         "trainable_params": sum(p.numel() for p in enc.parameters() if p.requires_grad)}
    log(f"bare step {secs:.3f} s, train step {train_secs:.3f} s for {cfg.micro_batch} texts of "
        f"{cfg.n_tokens} tokens: {r['bare_texts_per_s']} vs {r['train_texts_per_s']} texts/s, "
        f"train/bare {r['train_over_bare']}")
    log("train step: " + ", ".join(f"{k} {parts[f'phase_{k}_s']:.4f} s"
                                   for k in (*PHASES, "other"))
        + f" of {parts['phased_step_seconds']:.4f} s; a batch takes {r['data_prepare_s']} s "
        f"to make (prefetch {r['prefetch']})")
    log(f"{r['achieved_gflops']} GFLOP/s of {r['matmul_gflops']} (2048^3 matmul) -> "
        f"utilisation {r['flop_utilisation']}, {r['flop_utilisation_vs_gemm_shape']} of its own "
        f"GEMM shape; peak {r['train_peak_memory_gib']} GiB training, {r['peak_memory_gib']} GiB "
        f"with the bare loop's decoder too")
    return r


def main(argv=None) -> int:
    def body(cfg, mr):
        r = bench(cfg, log=lambda s: print(s, file=sys.stderr, flush=True))
        mr.metrics({f"bench_encoder/{k}": v for k, v in r.items()
                    if isinstance(v, (int, float))})
        lines = [f"| {k} | {v} |" for k, v in r.items()]
        return "| measure | value |\n|---|---|\n" + "\n".join(lines), r

    return run_command(BenchEncoderConfig, __doc__, argv, "bench_encoder", body,
                       errors=(C.ConfigError, EncoderError))


if __name__ == "__main__":
    sys.exit(main())
