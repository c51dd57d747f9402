"""Fitting benchmark: ratios measured side by side in one run, on the same texts.

  python -m eval.bench_fit                              # default model, this machine (~20 min here)
  python -m eval.bench_fit n_texts=8 batch_size=0 paper_texts=0 cap=300   # one batch of 8, no refill
  python -m eval.bench_fit model=tiny-random n_texts=4 batch_size=2 n_tokens=8 cap=100   # tiny CPU run

1. texts solved per hour: batched continuous fitting (n_texts streamed through a batch of
   batch_size rows, a solved row's slot refilled at once; 0 = all texts in one batch; idle
   rows back up stragglers with `tail_restarts` extra seeds, as proto.fit does by default) vs
   the per-text loop (batch 1, one text after another, as in the reference implementations),
   same recipe and seeds; beside it the rate ceiling batching can reach on this machine: seconds per
   row-step of a full batch at each of `scaling_batches`, against batch 1;
2. steps to solve: default recipe vs paper recipe on the first paper_texts texts (0 = all),
   both capped at `cap` (a text unsolved at the cap counts as `cap`, so the ratio is a lower
   bound whenever the paper recipe hits it);
3. FLOP utilisation of a fit step (forward + input-gradient backward, counted from the model's
   shapes) against a dense fp32/bf16 matmul measured on this machine in this run, and the
   top operators of a profiled step, to show where the time goes.
Last stdout line: JSON with speedup_batched_vs_loop, speedup_default_vs_paper_steps,
flop_utilisation (and the raw numbers). Logged to MLflow (experiment `eval`).
"""
from __future__ import annotations

import dataclasses
import statistics
import sys
import time

import torch

from eval.common import check_fits, run_command, stderr_log, table_errors
from proto.fit import FitRow, Fitter, get_recipe
from proto.models import ModelFields, load_model
from proto.sources import sample_texts


@dataclasses.dataclass
class BenchConfig(ModelFields):
    source: str = "britannica"
    n_texts: int = 24
    batch_size: int = 8           # 0 = every text in one batch (no refilling)
    tail_restarts: int = 3        # the batched arm's backups of stragglers (proto.fit's default)
    n_tokens: int = 16
    cap: int = 400
    recipe: str = "default"
    baseline_recipe: str = "paper"
    paper_texts: int = 8          # the baseline runs on the first k texts (0 = all): it hits the cap
    profile_batch: int = 8
    scaling_batches: list[int] = dataclasses.field(default_factory=lambda: [1, 4, 8, 16, 32])
    seed: int = 0
    mlflow: bool = True

    def __post_init__(self):
        if self.n_texts < 1 or self.n_tokens < 1 or self.cap < 1 or self.profile_batch < 1:
            raise ValueError("n_texts, n_tokens, cap and profile_batch must be >= 1")
        if self.batch_size < 0 or self.paper_texts < 0 or self.tail_restarts < 0:
            raise ValueError("batch_size, paper_texts and tail_restarts must be >= 0")
        if not self.scaling_batches or min(self.scaling_batches) < 1:
            raise ValueError("scaling_batches must be positive batch sizes")


def timed(fn, reps: int, device) -> float:
    """Median seconds of `fn()` over `reps` calls after one warm-up call (CUDA synchronised)."""
    fn()
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


def matmul_rate(dtype: torch.dtype, device, n: int = 2048, reps: int = 5,
                k: int | None = None, mcols: int | None = None) -> float:
    """FLOP/s of an (n x k) @ (k x mcols) matmul on this device (warm, median of reps)."""
    k, mcols = k or n, mcols or n
    a = torch.randn(n, k, device=device, dtype=dtype)
    b = torch.randn(k, mcols, device=device, dtype=dtype)
    return 2 * n * k * mcols / timed(lambda: a @ b, reps, torch.device(device))


def forward_flops(lm, batch: int, n: int, input_len: int) -> float:
    """FLOPs of one forward over `input_len` positions with logits at `n` of them (see
    step_flops for what is counted)."""
    return _flops(lm, batch, n, input_len)[0]


def step_flops(lm, batch: int, n: int, input_len: int) -> float:
    """FLOPs of one fit step: forward + backward to the inputs (no weight gradients).

    Linear layers: 2*in*out per token forward, the same again for the input gradient.
    lm_head only at the n scored positions. Attention scores and mixing: 4*L^2*d per layer
    forward (causal halves it; counted in full as the kernels do), about twice that backward.
    """
    return float(sum(_flops(lm, batch, n, input_len)))


def _flops(lm, batch: int, n: int, input_len: int) -> tuple[float, float]:
    model = lm.model
    head = model.get_output_embeddings()
    lin = sum(m.in_features * m.out_features for m in model.modules()
              if isinstance(m, torch.nn.Linear) and m is not head)
    cfg = getattr(model.config, "text_config", model.config)
    d_attn = cfg.num_attention_heads * getattr(cfg, "head_dim", cfg.hidden_size
                                               // cfg.num_attention_heads)
    fwd = (2 * lin * input_len + 2 * head.in_features * head.out_features * n
           + 4 * cfg.num_hidden_layers * input_len ** 2 * d_attn) * batch
    bwd = (2 * lin * input_len + 2 * head.in_features * head.out_features * n
           + 8 * cfg.num_hidden_layers * input_len ** 2 * d_attn) * batch
    return float(fwd), float(bwd)


def full_batch(lm, recipe, texts, b: int) -> tuple[Fitter, list[FitRow]]:
    """A Fitter with b rows (the texts, cycled) and no cap, for timing steps of a full batch."""
    rows = [FitRow(texts[i % len(texts)], f"b{i}") for i in range(b)]
    return Fitter(lm, dataclasses.replace(recipe, max_steps=10 ** 6), batch_size=b), rows


def time_steps(fitter: Fitter, rows, steps: int = 3) -> float:
    """Median seconds of a fit step for these rows (no early stop in `steps` steps)."""
    ts = []
    fitter.fit(rows, max_steps=steps, progress=lambda s: ts.append(s["step_seconds"]))
    return statistics.median(ts[1:] or ts)


def profile_step(fitter: Fitter, rows, top: int = 8) -> list[dict]:
    # lazy: the profiler is needed only by the FLOP breakdown
    from torch.profiler import ProfilerActivity, profile
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    fitter.fit(rows, max_steps=1)  # warm-up
    with profile(activities=acts) as prof:
        fitter.fit(rows, max_steps=2)
    total = sum(e.self_cpu_time_total for e in prof.key_averages())
    out = []
    for e in sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)[:top]:
        out.append({"op": e.key, "self_ms": e.self_cpu_time_total / 1e3,
                    "share": e.self_cpu_time_total / max(total, 1)})
    return out


def bench(cfg: BenchConfig, log=print) -> dict:
    lm = load_model(cfg.model, device=cfg.device or None, dtype=cfg.dtype)
    texts = [ids for _, ids in sample_texts(lm.tokenize, cfg.source, cfg.n_tokens,
                                            cfg.n_texts, seed=cfg.seed)]
    rows = [FitRow(ids, f"t{i}") for i, ids in enumerate(texts)]
    recipe = dataclasses.replace(get_recipe(cfg.recipe), max_steps=cfg.cap)
    base = dataclasses.replace(get_recipe(cfg.baseline_recipe), max_steps=cfg.cap)
    for r in (recipe, base):
        check_fits(lm, r, cfg.n_tokens)
    out: dict = {"model": lm.identity, "device": str(lm.device), "dtype": str(lm.dtype),
                 "n_texts": len(rows), "n_tokens": cfg.n_tokens, "cap": cfg.cap,
                 "threads": torch.get_num_threads()}

    # 1. batched continuous fitting vs the per-text loop, same recipe and seeds
    bs = min(cfg.batch_size or len(rows), len(rows))
    out["batch_size"] = bs
    log(f"[1/3] batched: {len(rows)} texts of {cfg.n_tokens} tokens through a batch of {bs} ...")
    t0 = time.perf_counter()
    batched = Fitter(lm, recipe, batch_size=bs, seed=cfg.seed,
                     tail_restarts=cfg.tail_restarts).fit(rows)
    t_batched = time.perf_counter() - t0
    log(f"      {sum(r.solved for r in batched)}/{len(rows)} solved in {t_batched:.0f} s")
    log("[1/3] per-text loop (batch 1) on the same texts ...")
    t0 = time.perf_counter()
    loop = [Fitter(lm, recipe, batch_size=1, seed=cfg.seed).fit([r])[0] for r in rows]
    t_loop = time.perf_counter() - t0
    log(f"      {sum(r.solved for r in loop)}/{len(rows)} solved in {t_loop:.0f} s")
    tph_b = 3600 * sum(r.solved for r in batched) / t_batched
    tph_l = 3600 * sum(r.solved for r in loop) / t_loop
    out.update(batched_seconds=t_batched, loop_seconds=t_loop,
               batched_texts_per_hour=tph_b, loop_texts_per_hour=tph_l,
               speedup_batched_vs_loop=(tph_b / tph_l) if tph_l else float("inf"))
    # What batching can gain here at most: a row-step's cost in a full batch of B against B=1
    # (the step costs of one run; the fits above also pay for partly filled tail batches).
    log(f"[1/3] seconds per row-step at batches {cfg.scaling_batches} ...")
    per_row = {}
    for b in sorted(set(cfg.scaling_batches)):
        f, sb = full_batch(lm, recipe, texts, b)
        per_row[b] = time_steps(f, sb) / b
    best = min(per_row, key=per_row.get)
    out.update(row_step_seconds_by_batch={str(b): v for b, v in per_row.items()},
               batching_ceiling=(per_row[1] / per_row[best]) if 1 in per_row else None,
               batching_ceiling_batch=best)

    # 2. default vs paper recipe: steps to solve (censored at the cap)
    k = min(cfg.paper_texts or len(rows), len(rows))
    log(f"[2/3] {cfg.baseline_recipe} recipe on the first {k} texts (cap {cfg.cap}) ...")
    t0 = time.perf_counter()
    paper = Fitter(lm, base, batch_size=k, seed=cfg.seed).fit(rows[:k])
    t_paper = time.perf_counter() - t0
    st_d = [r.steps if r.solved else cfg.cap for r in batched[:k]]
    st_p = [r.steps if r.solved else cfg.cap for r in paper]
    out.update(paper_texts=k, default_steps_median=statistics.median(st_d),
               paper_steps_median=statistics.median(st_p),
               default_solved=sum(r.solved for r in batched[:k]),
               paper_solved=sum(r.solved for r in paper), paper_seconds=t_paper,
               speedup_default_vs_paper_steps=statistics.median(st_p) / statistics.median(st_d),
               paper_censored=any(not r.solved for r in paper))

    # 3. FLOP utilisation of a step against a matmul measured now
    log("[3/3] step FLOPs vs matmul rate, and a profile ...")
    fitter, pb = full_batch(lm, recipe, texts, cfg.profile_batch)
    # The scaling block above already timed a full batch of this size: one timing, not two.
    t_step = (per_row[cfg.profile_batch] * cfg.profile_batch if cfg.profile_batch in per_row
              else time_steps(fitter, pb))
    L = fitter.arr.input_length(cfg.n_tokens)
    flops = step_flops(lm, len(pb), cfg.n_tokens, L)
    rate = matmul_rate(lm.dtype, lm.device)
    # The step's own GEMMs are thin ([B*L, d] @ [d, ffn]); their rate bounds what a step can do.
    ffn = max(m.out_features for m in lm.model.modules() if isinstance(m, torch.nn.Linear)
              and m is not lm.model.get_output_embeddings())
    shape_rate = matmul_rate(lm.dtype, lm.device, n=len(pb) * L, k=lm.d_model, mcols=ffn)
    out.update(matmul_model_shape_gflops_per_s=shape_rate / 1e9,
               flop_utilisation_vs_model_shape=flops / t_step / shape_rate,
               step_seconds=t_step, step_gflop=flops / 1e9, step_gflops_per_s=flops / t_step / 1e9,
               matmul_gflops_per_s=rate / 1e9, flop_utilisation=flops / t_step / rate,
               profile_batch=len(pb), profile=profile_step(fitter, pb))
    return out


def report(cfg: BenchConfig, r: dict) -> str:
    lines = [
        f"\nbatched vs per-text loop : {r['batched_texts_per_hour']:.0f} vs "
        f"{r['loop_texts_per_hour']:.0f} texts/h  -> x{r['speedup_batched_vs_loop']:.2f} "
        f"({r['n_texts']} texts, batch {r['batch_size']})",
        "seconds per row-step, full batch of B: " + ", ".join(
            f"B={b} {v:.3f}" for b, v in r["row_step_seconds_by_batch"].items())
        + (f" -> batching ceiling x{r['batching_ceiling']:.2f} (B={r['batching_ceiling_batch']}"
           " vs B=1)" if r["batching_ceiling"] else ""),
        f"{cfg.recipe} vs {cfg.baseline_recipe} steps : median {r['default_steps_median']:.0f} vs "
        f"{r['paper_steps_median']:.0f} ({r['default_solved']} vs {r['paper_solved']} of "
        f"{r['paper_texts']} solved by {cfg.cap}) -> x{r['speedup_default_vs_paper_steps']:.2f}"
        f"{' (lower bound: paper hit the cap)' if r['paper_censored'] else ''}",
        f"fit step (B={r['profile_batch']}, N={cfg.n_tokens}): {r['step_gflop']:.1f} GFLOP in "
        f"{r['step_seconds']:.3f} s = {r['step_gflops_per_s']:.0f} GFLOP/s; matmul "
        f"{r['matmul_gflops_per_s']:.0f} GFLOP/s (2048^3) -> utilisation "
        f"{r['flop_utilisation']:.2f}; vs a matmul of the step's own shape "
        f"({r['matmul_model_shape_gflops_per_s']:.0f} GFLOP/s): "
        f"{r['flop_utilisation_vs_model_shape']:.2f}",
        "top operators of a profiled step:"]
    lines += [f"  {op['share']:6.1%}  {op['self_ms']:9.1f} ms  {op['op']}" for op in r["profile"]]
    return "\n".join(lines)


def main(argv=None):

    def body(cfg, mr):
        r = bench(cfg, log=stderr_log)
        mr.metrics({f"bench/{k}": v for k, v in r.items() if isinstance(v, (int, float))})
        mr.dict(r, "bench_fit.json")
        return report(cfg, r), {k: v for k, v in r.items() if k != "profile"}

    return run_command(BenchConfig, __doc__, argv, "bench_fit", body, errors=table_errors)


if __name__ == "__main__":
    sys.exit(main())
