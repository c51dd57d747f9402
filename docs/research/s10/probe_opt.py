"""Session 10 probe: other per-row update rules for e and m against AdamW default_v1.

  .venv/bin/python docs/research/s10/probe_opt.py N N_TEXTS CAP 'variant-json' ...
A variant is a JSON dict of Recipe overrides of default_v1 plus probe-only keys (leading "_"):
  _opt: adam (the Fitter's vectorised AdamW, default) | rprop (iRprop-: a step size per
        coordinate, x eta_plus while the gradient keeps its sign, x eta_minus and a skipped
        update when it flips; made for deterministic full-batch losses, which ours is)
  _eta_plus, _eta_minus, _step0, _step_min, _step_max: Rprop's constants
  _e_scale/_m_scale: scale the init.
  _loss: ce_masked drops positions whose target logit leads every other by >= _margin (default
        2.0) from the CE sum (they are right with room), so the gradient goes to the rest.
  _from: a file saved by docs/research/s9/probe_traj.py (_save) and _from_row: its row; every
        row starts at that row's solved e, m plus its own init noise x _noise (default 1).
Texts: the first N_TEXTS Gutenberg-prose and N_TEXTS random-word texts of
data_gen.sources.sample_texts (seed TEXT_SEED, default 0), the same as eval.recipes; inits
are the Fitter's per-row seeds. Rows keep stepping after they solve; steps-to-solve is the
first step at full accuracy. Also prints, per row, the step each position was first right.
"""
import json
import os
import sys
import time

import torch

from data_gen.sources import sample_texts
from proto.fit import Fitter, _Table, forward_scores, get_recipe, init_vector, row_losses, row_seed
from proto.models import load_model

n, k, cap = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
variants = [json.loads(v) for v in sys.argv[4:]] or [{}]
torch.manual_seed(0)
lm = load_model("smollm2-135m")
seed = int(os.environ.get("TEXT_SEED", "0"))
texts = []
for src in ("britannica", "random-words"):
    texts += [(src, ids) for _, ids in sample_texts(lm.tokenize, src, n, k, seed=seed)]
B = len(texts)
tgt = torch.tensor([ids for _, ids in texts])
ntok = torch.full((B,), n)


class Rprop:
    def __init__(self, p, step0, lo, hi, up, down):
        self.p, self.lo, self.hi, self.up, self.down = p, lo, hi, up, down
        self.step = torch.full_like(p, step0)
        self.prev = torch.zeros_like(p)

    @torch.no_grad()
    def update(self, g):
        s = g * self.prev
        self.step = torch.where(s > 0, self.step * self.up,
                                torch.where(s < 0, self.step * self.down, self.step))
        self.step.clamp_(self.lo, self.hi)
        g = torch.where(s < 0, torch.zeros_like(g), g)
        self.p -= g.sign() * self.step
        self.prev = g


for var in variants:
    label = json.dumps(var)
    probe = {kk: var.pop(kk) for kk in list(var) if kk.startswith("_")}
    rec = get_recipe("default_v1", **var)
    fit = Fitter(lm, rec, batch_size=B)
    keys = [f"{s}:{i}" for i, (s, _) in enumerate(texts)]
    e0 = torch.stack([init_vector(row_seed(0, kk, 0, "e"), lm.d_model, fit.std) for kk in keys])
    m0 = torch.stack([init_vector(row_seed(0, kk, 0, "m"), lm.d_model, fit.std) for kk in keys])
    e0 = e0 * probe.get("_e_scale", 1.0)
    m0 = m0 * probe.get("_m_scale", 1.0)
    if "_from" in probe:
        sol = torch.load(probe["_from"])
        r = probe.get("_from_row", 0)
        e0 = sol["e"][r].reshape(1, -1) + e0 * probe.get("_noise", 1.0)
        m0 = sol["m"][r].reshape(1, -1) + m0 * probe.get("_noise", 1.0)
    opt = probe.get("_opt", "adam")
    if opt == "adam":
        te, tm = _Table(lm.d_model, "cpu", True), _Table(lm.d_model, "cpu", True)
        te.add(e0); tm.add(m0)
        get = lambda: (te.p, tm.p)
        def apply(ge, gm):
            te.step(ge, rec); tm.step(gm, rec)
    elif opt == "rprop":
        args = (probe.get("_step0", 0.1), probe.get("_step_min", 1e-4), probe.get("_step_max", 2.0),
                probe.get("_eta_plus", 1.2), probe.get("_eta_minus", 0.5))
        oe, om = Rprop(e0.clone(), *args), Rprop(m0.clone(), *args)
        get = lambda: (oe.p, om.p)
        def apply(ge, gm):
            oe.update(ge); om.update(gm)
    else:
        raise SystemExit(f"unknown _opt {opt}")
    solved = torch.full((B,), -1)
    first_right = torch.full((B, n), -1)
    t0 = time.time()
    for step in range(1, cap + 1):
        pe, pm = get()
        e = pe.detach().requires_grad_(); m = pm.detach().requires_grad_()
        x = fit.arr.build(e, m, n, fit.prefix_emb, None)
        logits = forward_scores(lm, fit.arr, x, n)
        loss_r, hits = row_losses(logits, tgt, ntok, rec)
        if probe.get("_loss") == "ce_masked":
            zt = logits.gather(-1, tgt.unsqueeze(-1)).squeeze(-1)
            other = logits.scatter(-1, tgt.unsqueeze(-1), float("-inf")).max(-1).values
            keep = ((zt - other) < probe.get("_margin", 2.0)).float().detach()
            ce = torch.nn.functional.cross_entropy(logits.transpose(1, 2), tgt, reduction="none")
            loss_r = (ce * keep).sum(1) / n
        ge, gm = torch.autograd.grad(loss_r.sum(), [e, m])
        first_right[hits & (first_right < 0)] = step
        acc = hits.float().mean(1)
        solved[(acc == 1) & (solved < 0)] = step
        if step % 10 == 0 or step == 1:
            print(f"  step {step:4d} loss {loss_r.mean():.3f} acc {' '.join(f'{a:.2f}' for a in acc.tolist())}"
                  f" |e| {e.norm(dim=1).mean():.1f} |m| {m.norm(dim=1).mean():.1f}", flush=True)
        if bool((solved > 0).all()):
            break
        apply(ge, gm)
    s = [int(v) if v > 0 else cap for v in solved.tolist()]
    for r in range(B):
        print(f"  row {r} first right per position: {first_right[r].tolist()}")
    print(f"VARIANT {label}: steps {s} median nat {sorted(s[:k])[k//2]} rand {sorted(s[k:])[k//2]}"
          f" solved {(solved>0).sum().item()}/{B} ({time.time()-t0:.0f}s)", flush=True)
