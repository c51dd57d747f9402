"""Probe (2026-11-22): per-row L-BFGS (strong Wolfe) vs AdamW default_v1, counting model evaluations.

  .venv/bin/python docs/research/fitting-recipes/adamw-probes/probe_lbfgs.py N N_TEXTS CAP [opt ...]
"""
import sys, time, math, json
import torch, torch.nn.functional as F
from proto.models import load_model
from proto.fit import Fitter, get_recipe, init_vector, row_seed
from proto.sources import sample_texts

n, k, cap = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
opts = sys.argv[4:] or ["lbfgs"]
torch.manual_seed(0)
lm = load_model("smollm2-135m")
rec = get_recipe("default_v1")
fit = Fitter(lm, rec, batch_size=1)
texts = []
for src in ("britannica", "random-words"):
    texts += [(src, ids) for _, ids in sample_texts(lm.tokenize, src, n, k, seed=0)]


def run(opt, ids, key):
    tgt = torch.tensor([ids])
    e = init_vector(row_seed(0, key, 0, "e"), lm.d_model, fit.std).reshape(1, -1).requires_grad_()
    m = init_vector(row_seed(0, key, 0, "m"), lm.d_model, fit.std).reshape(1, -1).requires_grad_()
    evals = [0]
    best = [0.0]
    solved_at = [None]

    def f():
        logits = fit.onepass.logits(e, m, n)
        loss = F.cross_entropy(logits[0], tgt[0])
        evals[0] += 1
        acc = float((logits[0].argmax(-1) == tgt[0]).float().mean())
        best[0] = max(best[0], acc)
        if acc == 1.0 and solved_at[0] is None:
            solved_at[0] = evals[0]
        return loss, acc

    if opt.startswith("lbfgs"):
        hist = 20
        o = torch.optim.LBFGS([e, m], lr=1.0, max_iter=1, history_size=hist,
                              line_search_fn="strong_wolfe")
        def closure():
            o.zero_grad()
            loss, acc = f()
            loss.backward()
            return loss
        while evals[0] < cap and solved_at[0] is None:
            o.step(closure)
    else:
        # AdamW default_v1 via the library's table (same update)
        from proto.fit import RowAdam
        tabs = []
        for v in (e, m):
            t = RowAdam(lm.d_model, "cpu", True); t.add(v.detach()); tabs.append(t)
        while evals[0] < cap and solved_at[0] is None:
            e.data.copy_(tabs[0].p); m.data.copy_(tabs[1].p)
            e.grad = m.grad = None
            loss, acc = f()
            loss.backward()
            tabs[0].step(e.grad, rec); tabs[1].step(m.grad, rec)
    return solved_at[0], evals[0], best[0], float(e.norm()), float(m.norm())

for opt in opts:
    out = []
    t0 = time.time()
    for i, (src, ids) in enumerate(texts):
        s, ev, b, en, mn = run(opt, ids, f"{src}:{i}")
        out.append(s or cap)
        print(f"{opt} {src[:4]} {i}: solved_at {s} evals {ev} best_acc {b:.3f} |e| {en:.1f} |m| {mn:.1f}"
              f" ({time.time()-t0:.0f}s)", flush=True)
    print(opt, "steps", out, "median", sorted(out)[len(out)//2], flush=True)
