"""One-pass reconstruction vs autoregressive decoding: tokens per second, measured in one run.

  python -m eval.throughput                                   # default model, N = 16, 32, 64
  python -m eval.throughput "lengths=[64]" reps=5 fit_texts=0
  python -m eval.throughput model=tiny-random "lengths=[8]" fit_texts=1 fit_length=6   # tiny run

For each length N, the same model produces N tokens two ways, batch 1, greedy:
  one-pass  ONE forward of [sink, e, m x (N-1)]  (paper's scheme; logits at the N positions)
  AR        HF generate from [sink, mem] with its KV cache, N new tokens (Kuratov's scheme)
Decoding time does not depend on the vectors' values, so timing uses random vectors; the
fitting cost that one-pass decoding needs (and AR memory tokens need too) is measured beside
it by fitting `fit_texts` real texts of `fit_length` tokens, whose one-pass decode is checked.
Paper (Fig. 3): one-pass is 279x faster on average, at each model's maximal lossless length.
The one-pass forward's FLOPs (counted from the model's shapes) against a dense matmul measured
in the same run give its utilisation and `ratio_at_matmul_peak`, the ratio this machine would
reach if the forward ran at full matmul speed (an upper bound while AR steps stay as measured).
Last stdout line JSON: n_tokens, one_pass_tokens_per_s, ar_tokens_per_s, ratio (at the
largest N), matmul_gflop_per_s, per-length rows (with one_pass_utilisation and
ratio_at_matmul_peak), fit_seconds_per_text. Logged to MLflow (experiment `eval`).
"""
from __future__ import annotations

import dataclasses
import statistics
import sys
import time

import torch

from eval.bench_fit import forward_flops, matmul_rate
from proto.arrangement import Arrangement, prefix_ids
from proto.decode import autoregressive, hits, one_pass
from proto.fit import FitRow, Fitter, embedding_std, get_recipe
from proto.models import DEFAULT_MODEL, load_model


@dataclasses.dataclass
class ThroughputConfig:
    model: str = DEFAULT_MODEL
    device: str = ""
    dtype: str = "auto"
    lengths: list[int] = dataclasses.field(default_factory=lambda: [16, 32, 64])
    reps: int = 5
    fit_texts: int = 2
    fit_length: int = 16
    source: str = "britannica"
    seed: int = 0
    mlflow: bool = True

    def __post_init__(self):
        if not self.lengths or min(self.lengths) < 1:
            raise ValueError("lengths must be positive")
        if self.reps < 1:
            raise ValueError("reps must be >= 1")


def _timed(fn, reps: int, device) -> float:
    fn()  # warm-up
    ts = []
    for _ in range(reps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def measure(cfg: ThroughputConfig, log=print) -> dict:
    lm = load_model(cfg.model, device=cfg.device or None, dtype=cfg.dtype)
    sink = prefix_ids(lm.tokenizer, "sink")
    one = Arrangement("e_m", sink)
    ar = Arrangement("mem_ar", sink)
    g = torch.Generator().manual_seed(cfg.seed)
    std = embedding_std(lm)
    e, m = (torch.randn(2, 1, lm.d_model, generator=g) * std).unbind(0)
    # The one-pass forward is compute-bound where AR steps are not: its FLOPs against a dense
    # matmul measured now give the ratio this machine could reach at full matmul speed.
    peak = matmul_rate(lm.dtype, lm.device)
    log(f"dense {str(lm.dtype).replace('torch.', '')} matmul (2048^3) on this device: "
        f"{peak / 1e9:.0f} GFLOP/s")
    rows = []
    for n in cfg.lengths:
        t_one = _timed(lambda: one_pass(lm, one, e, m, n), cfg.reps, lm.device)
        t_ar = _timed(lambda: autoregressive(lm, ar, e[0], n), cfg.reps, lm.device)
        flops = forward_flops(lm, 1, n, one.input_length(n))
        row = {"n_tokens": n, "one_pass_s": t_one, "ar_s": t_ar,
               "one_pass_tokens_per_s": n / t_one, "ar_tokens_per_s": n / t_ar,
               "ratio": t_ar / t_one, "ratio_over_n": t_ar / t_one / n,
               "one_pass_gflop": flops / 1e9, "one_pass_utilisation": flops / t_one / peak,
               "ratio_at_matmul_peak": t_ar / (flops / peak)}
        rows.append(row)
        log(f"N={n:4d}: one-pass {t_one * 1e3:8.1f} ms ({n / t_one:8.0f} tok/s, "
            f"{row['one_pass_utilisation']:.2f} of matmul peak) | AR {t_ar * 1e3:8.1f} ms "
            f"({n / t_ar:6.0f} tok/s) | ratio {t_ar / t_one:6.1f} = {t_ar / t_one / n:.2f} N "
            f"(at matmul peak: {row['ratio_at_matmul_peak']:.1f})")
    out = {"model": lm.identity, "device": str(lm.device), "dtype": str(lm.dtype),
           "matmul_gflop_per_s": peak / 1e9, "rows": rows,
           **{k: rows[-1][k] for k in ("n_tokens", "one_pass_tokens_per_s", "ar_tokens_per_s",
                                       "ratio")}}
    if cfg.fit_texts > 0:
        from data_gen.sources import sample_texts
        texts = [ids for _, ids in sample_texts(lm.tokenize, cfg.source, cfg.fit_length,
                                                cfg.fit_texts, seed=cfg.seed)]
        f = Fitter(lm, get_recipe("default"), batch_size=len(texts), seed=cfg.seed)
        t0 = time.perf_counter()
        res = f.fit([FitRow(ids, f"t{i}") for i, ids in enumerate(texts)])
        fit_s = time.perf_counter() - t0
        pred = one_pass(lm, f.arr, torch.stack([r.e for r in res]),
                        torch.stack([r.m for r in res]), cfg.fit_length)
        acc, _ = hits(pred.cpu(), torch.tensor(texts))
        out.update(fit_length=cfg.fit_length, fit_texts=len(texts),
                   fit_seconds_per_text=fit_s / len(texts),
                   fit_solved=sum(r.solved for r in res), fit_decode_accuracy=acc)
        log(f"fitting cost: {len(texts)} texts of {cfg.fit_length} tokens in {fit_s:.0f} s "
            f"({fit_s / len(texts):.1f} s/text, batched), {out['fit_solved']} solved; one-pass "
            f"decode accuracy {acc}")
    return out


def report(r: dict) -> str:
    lines = ["| N | one-pass tok/s | AR tok/s | ratio | ratio / N |", "|---|---|---|---|---|"]
    lines += [f"| {row['n_tokens']} | {row['one_pass_tokens_per_s']:.0f} | "
              f"{row['ar_tokens_per_s']:.0f} | {row['ratio']:.1f} | {row['ratio_over_n']:.2f} |"
              for row in r["rows"]]
    return "\n".join(lines)


def main(argv=None):
    from eval.common import run_command, table_errors

    def body(cfg, mr):
        r = measure(cfg)
        for row in r["rows"]:
            mr.metrics({f"throughput/N{row['n_tokens']}/{k}": v for k, v in row.items()})
        mr.metrics({"eval/throughput_ratio": r["ratio"]})
        mr.dict(r, "throughput.json")
        return report(r), r

    return run_command(ThroughputConfig, __doc__, argv, "throughput", body, errors=table_errors)


if __name__ == "__main__":
    sys.exit(main())
