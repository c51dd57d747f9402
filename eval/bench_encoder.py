"""Encoder training benchmark: examples/s, FLOP utilisation and peak memory of a training step.

  python -m eval.bench_encoder                                   # default encoder config, ~2 min
  python -m eval.bench_encoder micro_batch=32 n_tokens=16
  python -m eval.bench_encoder encoder_config=configs/encoder/tiny.yaml n_tokens=6 \\
      micro_batch=4 reps=2                                       # tiny CPU run (seconds)

A step is what training does per micro-batch: the encoder's forward and backward, the frozen
decoder's forward and backward to its input e (no weight gradients for it, no optimizer state),
and the optimizer update of the encoder's weights, all batched over the texts. Its FLOPs are
counted from the operators' shapes (torch.utils.flop_counter) on one real step; utilisation is
that rate against a dense matmul of the same dtype measured in the same run: the 2048^3 square
one, and the decoder's own widest GEMM shape (micro_batch x positions rows). Peak memory: the
process's peak resident set on a CPU (model included), torch's peak allocation on CUDA.
Last stdout line: JSON with examples_per_s, step_seconds, flop_utilisation, peak_memory_gib.
"""
from __future__ import annotations

import dataclasses
import resource
import sys

import torch

from encoder.config import EncoderConfig
from encoder.core import EncoderError, learned_start, load_llm
from encoder.losses import Decoder
from encoder.models import Encoder, pad_batch
from proto import config as C
from proto.arrangement import Arrangement, prefix_ids
from proto.sources import sample_texts

from .bench_fit import matmul_rate, timed
from .common import run_command


@dataclasses.dataclass
class BenchEncoderConfig:
    encoder_config: str = "configs/encoder/default.yaml"
    micro_batch: int = 16
    n_tokens: int = 8
    reps: int = 3
    device: str = ""
    mlflow: bool = True

    def __post_init__(self):
        if min(self.micro_batch, self.n_tokens, self.reps) < 1:
            raise ValueError("micro_batch, n_tokens and reps must be >= 1")


def build(cfg: BenchEncoderConfig):
    """(encoder, decoder, m, optimizer, lm) as the encoder config trains them (no corpus read:
    the benchmark needs only shapes, so m is the learned start's or a random vector)."""
    ecfg = C.load(EncoderConfig, cfg.encoder_config)
    lm = load_llm(ecfg.llm, cfg.device or ecfg.device, ecfg.dtype)
    start = learned_start(lm)
    e0, m = start if start else (torch.zeros(lm.d_model), torch.randn(lm.d_model) * 0.1)
    torch.manual_seed(0)
    enc = Encoder(ecfg.model, lm, e0, m).to(lm.device)
    opt = torch.optim.AdamW(enc.param_groups(ecfg.train.lr, ecfg.train.head_lr, 0.0))
    dec = Decoder.of(lm, Arrangement("e_m", prefix_ids(lm.tokenizer, "sink")))
    return enc, dec, m.to(lm.device), opt, lm


def bench(cfg: BenchEncoderConfig, log=print) -> dict:
    # lazy: the FLOP counter is needed only by the benchmark
    from torch.utils.flop_counter import FlopCounterMode


    enc, dec, m, opt, lm = build(cfg)
    try:
        dec.check_length(cfg.n_tokens, "a text")
    except ValueError as exc:
        raise C.ConfigError(str(exc)) from None
    toks = [ids for _, ids in sample_texts(lm.tokenize, "random-words", cfg.n_tokens,
                                             cfg.micro_batch)]
    ids, mask = pad_batch(toks, lm.device)
    batch = {"ids": ids, "mask": mask, "texts": [lm.detokenize(t) for t in toks]}

    def step():
        e = enc(batch)
        with enc.decoding():
            loss, _ = dec.loss(e, m, toks)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()
    with FlopCounterMode(display=False) as fc:
        step()
    flops = fc.get_total_flops()
    secs = timed(step, cfg.reps, lm.device)
    decoder_grads = sum(p.grad is not None for n, p in lm.model.named_parameters()
                        if "lora_" not in n)
    dtype = lm.dtype
    square = matmul_rate(dtype, lm.device)
    rows = cfg.micro_batch * (cfg.n_tokens + 1)
    shaped = matmul_rate(dtype, lm.device, n=rows, k=lm.d_model, mcols=4 * lm.d_model, reps=20)
    if lm.device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(lm.device) / 2 ** 30
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20  # KiB -> GiB
    rate = flops / secs
    r = {"model": lm.name, "encoder_kind": enc.cfg.kind, "micro_batch": cfg.micro_batch,
         "n_tokens": cfg.n_tokens, "dtype": lm.precision,
         "device": str(lm.device), "step_seconds": round(secs, 4),
         "examples_per_s": round(cfg.micro_batch / secs, 2), "step_gflop": round(flops / 1e9, 2),
         "achieved_gflops": round(rate / 1e9, 2), "matmul_gflops": round(square / 1e9, 2),
         "gemm_shape_gflops": round(shaped / 1e9, 2),
         "flop_utilisation": round(rate / square, 3),
         "flop_utilisation_vs_gemm_shape": round(rate / shaped, 3),
         "peak_memory_gib": round(peak, 2), "decoder_weight_grads": decoder_grads,
         "trainable_params": sum(p.numel() for p in enc.parameters() if p.requires_grad)}
    log(f"step {secs:.3f} s for {cfg.micro_batch} texts of {cfg.n_tokens} tokens: "
        f"{r['examples_per_s']} examples/s, {r['achieved_gflops']} GFLOP/s of "
        f"{r['matmul_gflops']} (2048^3 matmul) -> utilisation {r['flop_utilisation']}, "
        f"{r['flop_utilisation_vs_gemm_shape']} of its own GEMM shape; peak {r['peak_memory_gib']} GiB")
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
