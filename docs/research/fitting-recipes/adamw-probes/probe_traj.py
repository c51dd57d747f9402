"""Probe (2026-11-22): batched AdamW trajectories (loss, accuracy, norms) under recipe variants.

  .venv/bin/python docs/research/fitting-recipes/adamw-probes/probe_traj.py N N_TEXTS CAP 'variant-json' ...
A variant is a JSON dict of Recipe overrides of default_v1 plus probe-only keys (leading "_"):
  _m_from/_e_from: start at a saved vector (+ the init noise x _m_noise/_e_noise);
  _m_scale/_e_scale: scale the init; _m_lr: another lr for m; _save: save the final e, m.
  TEXT_SEED=k picks another text sample. Rows keep stepping after they solve (the Fitter
  drops them); steps-to-solve is the first step at full accuracy.
"""
import sys, time, math, json
import torch, torch.nn.functional as F
from proto.models import load_model
from proto.onepass import row_losses
from proto.fit import Fitter, get_recipe, init_vector, row_seed, RowAdam
from proto.sources import sample_texts

n, k, cap = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
variants = [json.loads(v) for v in sys.argv[4:]] or [{}]
torch.manual_seed(0)
lm = load_model("smollm2-135m")
texts = []
for src in ("britannica", "random-words"):
    texts += [(src, ids) for _, ids in sample_texts(lm.tokenize, src, n, k, seed=int(__import__("os").environ.get("TEXT_SEED", "0")))]
B = len(texts)
tgt = torch.tensor([ids for _, ids in texts])
ntok = torch.full((B,), n)

for var in variants:
    probe = {kk: var.pop(kk) for kk in list(var) if kk.startswith("_")}
    rec = get_recipe("default_v1", **var)
    fit = Fitter(lm, rec, batch_size=B)
    keys = [f"{s}:{i}" for i, (s, _) in enumerate(texts)]
    std = fit.std
    e0 = torch.stack([init_vector(row_seed(0, kk, 0, "e"), lm.d_model, std) for kk in keys])
    m0 = torch.stack([init_vector(row_seed(0, kk, 0, "m"), lm.d_model, std) for kk in keys])
    if "_m_from" in probe:  # start every row's m at a saved vector (e.g. the mean of solved m's)
        m0 = m0 * probe.get("_m_noise", 1.0) + torch.load(probe["_m_from"]).reshape(1, -1)
    if "_e_from" in probe:
        e0 = e0 * probe.get("_e_noise", 1.0) + torch.load(probe["_e_from"]).reshape(1, -1)
    if "_m_scale" in probe:
        m0 = m0 * probe["_m_scale"]
    if "_e_scale" in probe:
        e0 = e0 * probe["_e_scale"]
    te, tm = RowAdam(lm.d_model, "cpu", True), RowAdam(lm.d_model, "cpu", True)
    te.add(e0); tm.add(m0)
    solved = torch.full((B,), -1)
    t0 = time.time()
    for step in range(1, cap + 1):
        e = te.p.detach().requires_grad_(); m = tm.p.detach().requires_grad_()
        logits = fit.onepass.logits(e, m, n)
        loss_r, hits = row_losses(logits, tgt, ntok, rec.loss, rec.wrong_weight)
        ge, gm = torch.autograd.grad(loss_r.sum(), [e, m])
        acc = hits.float().mean(1)
        newly = (acc == 1) & (solved < 0)
        solved[newly] = step
        if step % 10 == 0 or step == 1:
            print(f"  step {step:4d} loss {loss_r.mean():.3f} acc {' '.join(f'{a:.2f}' for a in acc.tolist())}"
                  f" |e| {e.norm(dim=1).mean():.1f} |m| {m.norm(dim=1).mean():.1f}", flush=True)
        if bool((solved > 0).all()):
            break
        te.step(ge, rec)
        if "_m_lr" in probe:
            rec_m = get_recipe("default_v1", **{**var, "lr": probe["_m_lr"]})
            tm.step(gm, rec_m)
        else:
            tm.step(gm, rec)
    s = [int(v) if v > 0 else cap for v in solved.tolist()]
    if "_save" in probe:
        torch.save({"e": te.p.clone(), "m": tm.p.clone(), "solved": solved, "texts": texts},
                   probe["_save"])
    print(f"VARIANT {var} {probe}: steps {s} median nat {sorted(s[:k])[k//2]} rand {sorted(s[k:])[k//2]}"
          f" solved {(solved>0).sum().item()}/{B} ({time.time()-t0:.0f}s)", flush=True)
