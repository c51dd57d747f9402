"""Probe (2026-11-22): seconds per fit step (median of steps 2..K) for B rows of N tokens, default recipe.

  .venv/bin/python docs/research/fitting-benchmark/step_time.py B N K
  GLIBC_TUNABLES=glibc.malloc.mmap_threshold=4294967296:glibc.malloc.trim_threshold=4294967296 \\
      .venv/bin/python docs/research/fitting-benchmark/step_time.py B N K     # big blocks kept in the heap
"""
import resource, statistics, sys, time
import torch
from proto.models import load_model
from proto.fit import Fitter, FitRow, get_recipe

B, N, K = (int(a) for a in sys.argv[1:4])
lm = load_model("smollm2-135m")
g = torch.Generator().manual_seed(0)
rows = [FitRow(torch.randint(100, 40000, (N,), generator=g).tolist(), f"r{i}") for i in range(B)]
ts = []
r0 = resource.getrusage(resource.RUSAGE_SELF)
Fitter(lm, get_recipe("default"), batch_size=B).fit(rows, max_steps=K,
                                                    progress=lambda p: ts.append(p["step_seconds"]))
r1 = resource.getrusage(resource.RUSAGE_SELF)
print(f"B={B} N={N}: {statistics.median(ts[1:]):.3f} s/step (median of {len(ts) - 1}); "
      f"user {r1.ru_utime - r0.ru_utime:.1f} s sys {r1.ru_stime - r0.ru_stime:.1f} s "
      f"minor faults {r1.ru_minflt - r0.ru_minflt}")
