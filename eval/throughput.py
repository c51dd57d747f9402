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
A cached AR step at batch 1 must read every weight once, so a memory read rate measured in the
same run bounds it from below (weight bytes / read rate, or its FLOPs at matmul peak if that is
longer); `ratio_at_hardware_limits` is the ratio if BOTH sides ran at their machine limits:
where it is below a target, no implementation of either side reaches that target here.
`ratio_at_gemm_only` times the forward's matmuls alone at their own (thin) shapes: the ratio if
everything else in the forward (attention, norms, activations) cost nothing.
Last stdout line JSON: n_tokens, one_pass_tokens_per_s, ar_tokens_per_s, ratio (at the
largest N), matmul_gflop_per_s, per-length rows (with one_pass_utilisation and
ratio_at_matmul_peak, ratio_at_gemm_only, ar_memory_utilisation,
ratio_at_hardware_limits),
memory_read_gb_per_s, weight_bytes, fit_seconds_per_text. Logged to MLflow (experiment `eval`).
"""
from __future__ import annotations

import dataclasses
import sys
import time

import torch

from eval.bench_fit import forward_flops, matmul_rate, timed
from eval.common import run_command, table_errors
from proto import config as C
from proto.arrangement import Arrangement, prefix_ids
from proto.decode import autoregressive, hits, one_pass
from proto.fit import FitRow, Fitter, embedding_std, get_recipe
from proto.models import ModelFields, load_model
from proto.onepass import OnePass
from proto.sources import sample_texts


@dataclasses.dataclass
class ThroughputConfig(ModelFields):
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


def memory_read_rate(device, mbytes: int = 512, reps: int = 5) -> float:
    """Bytes/s of reading a float32 tensor much larger than the caches (a reduction over it)."""
    x = torch.rand(mbytes * 2**20 // 4, device=device)
    return x.numel() * 4 / timed(lambda: x.sum(), reps, torch.device(device))


def weight_bytes(model: torch.nn.Module) -> int:
    """Bytes of the model's distinct parameters (tied embeddings count once)."""
    seen, total = set(), 0
    for p in model.parameters():
        if p.data_ptr() not in seen:
            seen.add(p.data_ptr())
            total += p.numel() * p.element_size()
    return total


def gemm_seconds(lm, rows: int, n_logits: int, reps: int = 3) -> float:
    """Seconds the forward's matmuls alone take at their own shapes ([rows, in] @ [in, out] per
    linear layer, [n_logits, d] @ [d, vocab] for the head), each timed here: a ceiling for the
    whole forward that thin shapes lower well below the 2048^3 rate."""
    head = lm.model.get_output_embeddings()
    shapes: dict[tuple, int] = {}
    for mod in lm.model.modules():
        if isinstance(mod, torch.nn.Linear):
            r = n_logits if mod is head else rows
            key = (r, mod.in_features, mod.out_features)
            shapes[key] = shapes.get(key, 0) + 1
    total = 0.0
    for (r, k, o), count in shapes.items():
        # F.linear on [out, in] weights: the same kernel path as the model's layers
        x = torch.randn(r, k, device=lm.device, dtype=lm.dtype)
        w = torch.randn(o, k, device=lm.device, dtype=lm.dtype)
        total += count * timed(lambda: torch.nn.functional.linear(x, w), reps, lm.device)
    return total


def measure(cfg: ThroughputConfig, log=print) -> dict:
    lm = load_model(cfg.model, device=cfg.device or None, dtype=cfg.dtype)
    sink = prefix_ids(lm.tokenizer, "sink")
    one = Arrangement("e_m", sink)
    ar = Arrangement("mem_ar", sink)
    for arr in (one, ar):
        try:
            OnePass(lm, arr).check_length(max(cfg.lengths), f"a text in {arr.name}")
        except ValueError as exc:
            raise C.ConfigError(str(exc)) from None
    g = torch.Generator().manual_seed(cfg.seed)
    std = embedding_std(lm)
    e, m = (torch.randn(2, 1, lm.d_model, generator=g) * std).unbind(0)
    # The one-pass forward is compute-bound where AR steps are not: its FLOPs against a dense
    # matmul measured now give the ratio this machine could reach at full matmul speed.
    peak = matmul_rate(lm.dtype, lm.device)
    log(f"dense {str(lm.dtype).replace('torch.', '')} matmul (2048^3) on this device: "
        f"{peak / 1e9:.0f} GFLOP/s")
    bw = memory_read_rate(lm.device)
    wbytes = weight_bytes(lm.model)
    # an AR step's own FLOPs: one position's forward (the KV cache's reads are negligible here)
    ar_step_min = max(wbytes / bw, forward_flops(lm, 1, 1, 1) / peak)
    log(f"memory read rate: {bw / 1e9:.1f} GB/s; weights {wbytes / 1e6:.0f} MB -> a cached AR "
        f"step needs at least {ar_step_min * 1e3:.1f} ms here")
    rows = []
    for n in cfg.lengths:
        t_one = timed(lambda: one_pass(lm, one, e, m, n), cfg.reps, lm.device)
        t_ar = timed(lambda: autoregressive(lm, ar, e[0], n), cfg.reps, lm.device)
        flops = forward_flops(lm, 1, n, one.input_length(n))
        t_gemm = gemm_seconds(lm, one.input_length(n), n)
        row = {"n_tokens": n, "one_pass_s": t_one, "ar_s": t_ar,
               "one_pass_tokens_per_s": n / t_one, "ar_tokens_per_s": n / t_ar,
               "ratio": t_ar / t_one, "ratio_over_n": t_ar / t_one / n,
               "one_pass_gflop": flops / 1e9, "one_pass_utilisation": flops / t_one / peak,
               "ratio_at_matmul_peak": t_ar / (flops / peak),
               "one_pass_gemm_only_s": t_gemm, "ratio_at_gemm_only": t_ar / t_gemm,
               "ar_memory_utilisation": ar_step_min * n / t_ar,
               "ratio_at_hardware_limits": ar_step_min * n / (flops / peak)}
        rows.append(row)
        log(f"N={n:4d}: one-pass {t_one * 1e3:8.1f} ms ({n / t_one:8.0f} tok/s, "
            f"{row['one_pass_utilisation']:.2f} of matmul peak) | AR {t_ar * 1e3:8.1f} ms "
            f"({n / t_ar:6.0f} tok/s) | ratio {t_ar / t_one:6.1f} = {t_ar / t_one / n:.2f} N "
            f"(at matmul peak: {row['ratio_at_matmul_peak']:.1f}; if the forward took only its "
            f"GEMMs' time: {row['ratio_at_gemm_only']:.1f}; both sides at machine limits: "
            f"{row['ratio_at_hardware_limits']:.1f})")
    out = {"model": lm.identity, "device": str(lm.device), "dtype": str(lm.dtype),
           "matmul_gflop_per_s": peak / 1e9, "memory_read_gb_per_s": bw / 1e9,
           "weight_bytes": wbytes, "rows": rows,
           **{k: rows[-1][k] for k in ("n_tokens", "one_pass_tokens_per_s", "ar_tokens_per_s",
                                       "ratio")}}
    if cfg.fit_texts > 0:
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
    lines = ["| N | one-pass tok/s | AR tok/s | ratio | ratio / N | one-pass share of matmul "
             "peak | AR share of memory bound | ratio at matmul peak | ratio if one-pass took "
             "only its GEMMs' time | ratio at hardware limits |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {row['n_tokens']} | {row['one_pass_tokens_per_s']:.0f} | "
              f"{row['ar_tokens_per_s']:.0f} | {row['ratio']:.1f} | {row['ratio_over_n']:.2f} | "
              f"{row['one_pass_utilisation']:.2f} | {row['ar_memory_utilisation']:.2f} | "
              f"{row['ratio_at_matmul_peak']:.1f} | {row['ratio_at_gemm_only']:.1f} | "
              f"{row['ratio_at_hardware_limits']:.1f} |"
              for row in r["rows"]]
    return "\n".join(lines)


def main(argv=None):

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
