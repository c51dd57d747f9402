"""Probe (2026-11-23): a meta-learned start (Reptile) for e and m.

  .venv/bin/python -u docs/research/learned-starts/reptile-probe/reptile.py N ITERS K OUT.pt '{"lr": 0.1, ...}'
Learns one text-independent start (E0, M0). Each iteration samples 4 new Gutenberg-prose and
4 new random-word texts of N tokens (seed 1000 + iteration, so never the probes' evaluation
texts of seeds 0 and 1), starts every row at (E0, M0) plus its own N(0, sigma_emb) noise, runs K
steps of default_v1's AdamW (the JSON overrides it; key _eps: Reptile's step, linearly
decayed from it to 0 over ITERS), then moves the start toward the rows' mean end point:
  E0 += eps * mean_rows(e_K - E0), likewise M0.
Prints per iteration the mean loss and token accuracy after K steps (the quantity Reptile
lowers), and saves {"e": E0[None], "m": M0[None]} to OUT.pt after every iteration, in the
format docs/research/fitting-recipes/update-rules/probe_opt.py reads with '{"_from": OUT.pt, "_from_row": 0}'.
Tiny run (~1 min here): reptile.py 8 2 3 /tmp/r.pt '{}'
"""
import json
import sys
import time

import torch

from proto.sources import sample_texts
from proto.fit import Fitter, RowAdam, get_recipe, init_vector
from proto.models import load_model
from proto.onepass import row_losses

n, iters, k, out = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
over = json.loads(sys.argv[5]) if len(sys.argv) > 5 else {}
eps0 = over.pop("_eps", 1.0)
per = over.pop("_texts", 4)
torch.manual_seed(0)
lm = load_model("smollm2-135m")
rec = get_recipe("default_v1", **over)
fit = Fitter(lm, rec, batch_size=2 * per)
d = lm.d_model
E0 = init_vector(12345, d, fit.std)
M0 = init_vector(54321, d, fit.std)
gen = torch.Generator().manual_seed(7)
t_start = time.time()
for it in range(iters):
    texts = []
    for src in ("britannica", "random-words"):
        texts += [ids for _, ids in sample_texts(lm.tokenize, src, n, per, seed=1000 + it)]
    B = len(texts)
    tgt, ntok = torch.tensor(texts), torch.full((B,), n)
    te, tm = RowAdam(d, "cpu", True), RowAdam(d, "cpu", True)
    te.add(E0 + fit.std * torch.randn(B, d, generator=gen))
    tm.add(M0 + fit.std * torch.randn(B, d, generator=gen))
    for step in range(k + 1):
        e = te.p.detach().requires_grad_(); m = tm.p.detach().requires_grad_()
        loss_r, hits = row_losses(fit.onepass.logits(e, m, n), tgt, ntok, rec.loss, rec.wrong_weight)
        if step == 0:
            l0, a0 = loss_r.mean().item(), hits.float().mean().item()
        if step == k:
            break
        ge, gm = torch.autograd.grad(loss_r.sum(), [e, m])
        te.step(ge, rec); tm.step(gm, rec)
    eps = eps0 * (1 - it / iters)
    dE, dM = (te.p - E0).mean(0), (tm.p - M0).mean(0)
    E0, M0 = E0 + eps * dE, M0 + eps * dM
    acc = hits.float().mean(1)
    print(f"iter {it:3d} start loss {l0:.3f} acc {a0:.2f} | after {k} steps loss {loss_r.mean():.3f} "
          f"acc {acc.mean():.3f} solved {(acc == 1).sum().item()}/{B} | |E0| {E0.norm():.1f} |M0| {M0.norm():.1f} "
          f"|dE| {dE.norm():.1f} |dM| {dM.norm():.1f} eps {eps:.2f} | {time.time() - t_start:.0f}s", flush=True)
    torch.save({"e": E0[None].clone(), "m": M0[None].clone(), "iter": it, "args": sys.argv[1:]}, out)
