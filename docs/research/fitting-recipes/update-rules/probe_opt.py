"""Probe (2026-11-22/23): other per-row update rules for e and m against AdamW default_v1.

  .venv/bin/python docs/research/fitting-recipes/update-rules/probe_opt.py N N_TEXTS CAP 'variant-json' ...
A variant is a JSON dict of Recipe overrides of default_v1 plus probe-only keys (leading "_"):
  _opt: adam (the Fitter's vectorised AdamW, default) | rprop (iRprop-: a step size per
        coordinate, x eta_plus while the gradient keeps its sign, x eta_minus and a skipped
        update when it flips; made for deterministic full-batch losses, which ours is)
  _eta_plus, _eta_minus, _step0, _step_min, _step_max: Rprop's constants
  _e_scale/_m_scale: scale the init.
  _loss: ce_masked drops positions whose target logit leads every other by >= _margin (default
        2.0) from the CE sum (they are right with room), so the gradient goes to the rest.
  _opt: adam_rot: the same AdamW run in a rotated orthonormal basis U (e = U z,
        Adam on z), U from _basis: emb (eigenvectors of the token-embedding covariance),
        layer0 (of diag(w) W^T W diag(w) summed over layer 0's q, k, v, gate, up, w its input
        RMSNorm weight) or grad (of a covariance of per-row unit gradients shared by all rows,
        an EMA with decay _beta_s, re-decomposed every _every steps; the first moment is
        rotated with the basis, the second kept, as in SOAP). _basis_m: the same for m (default:
        _basis).
  _from: a file saved by docs/research/fitting-recipes/adamw-probes/probe_traj.py (_save) and _from_row: its row; every
        row starts at that row's solved e, m plus its own init noise x _noise (default 1).
Texts: the first N_TEXTS Gutenberg-prose and N_TEXTS random-word texts of
proto.sources.sample_texts (seed TEXT_SEED, default 0), the same as eval.recipes; inits
are the Fitter's per-row seeds. Rows keep stepping after they solve; steps-to-solve is the
first step at full accuracy. Also prints, per row, the step each position was first right.
"""
import dataclasses
import json
import os
import sys
import time

import torch

from proto.sources import sample_texts
from proto.fit import Fitter, RowAdam, lr_factor, get_recipe, init_vector, row_seed
from proto.models import load_model
from proto.onepass import row_losses

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


@torch.no_grad()
def nesterov_step(tab, grad, recipe):
    """RowAdam.step with a Nesterov first moment (NAdam without its momentum schedule)."""
    tab.t += 1
    t = tab.t.unsqueeze(1)
    lr = recipe.lr * lr_factor(recipe, tab.t).unsqueeze(1)
    tab.p.mul_(1 - lr * recipe.weight_decay)
    tab.ea.lerp_(grad, 1 - recipe.beta1)
    tab.eas.mul_(recipe.beta2).addcmul_(grad, grad, value=1 - recipe.beta2)
    num = recipe.beta1 * tab.ea / (1 - recipe.beta1 ** (t + 1)) + (1 - recipe.beta1) * grad / (1 - recipe.beta1 ** t)
    denom = (tab.eas / (1 - recipe.beta2 ** t)).sqrt_().add_(recipe.eps)
    tab.p.addcdiv_(num, denom / lr, value=-1.0)


def basis(kind):
    """An orthonormal d x d basis (columns) for adam_rot."""
    d = lm.d_model
    if kind in ("grad", "id"):
        return torch.eye(d)
    if kind == "emb":
        w = lm.model.get_input_embeddings().weight.detach().float()
        w = w - w.mean(0)
        return torch.linalg.eigh(w.T @ w / len(w))[1]
    if kind == "layer0":
        layer = lm.model.model.layers[0]
        g = layer.input_layernorm.weight.detach().float()
        mats = [layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj,
                layer.mlp.gate_proj, layer.mlp.up_proj]
        a = sum(mm.weight.detach().float().T @ mm.weight.detach().float() for mm in mats)
        return torch.linalg.eigh(g[:, None] * a * g[None, :])[1]
    raise SystemExit(f"unknown _basis {kind}")


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
        if probe.get("_from_rows"):
            e0 = sol["e"] + e0 * probe.get("_noise", 0.0)
            m0 = sol["m"] + m0 * probe.get("_noise", 0.0)
        else:
            e0 = sol["e"][r].reshape(1, -1) + e0 * probe.get("_noise", 1.0)
            m0 = sol["m"][r].reshape(1, -1) + m0 * probe.get("_noise", 1.0)
    opt = probe.get("_opt", "adam")
    if opt == "adam":
        te, tm = RowAdam(lm.d_model, "cpu", True), RowAdam(lm.d_model, "cpu", True)
        te.add(e0); tm.add(m0)
        get = lambda: (te.p, tm.p)
        rec_m = dataclasses.replace(rec, lr=probe.get("_m_lr", rec.lr))
        def apply(ge, gm):
            if probe.get("_nesterov"):
                nesterov_step(te, ge, rec); nesterov_step(tm, gm, rec_m)
            else:
                te.step(ge, rec); tm.step(gm, rec_m)
    elif opt == "rprop":
        args = (probe.get("_step0", 0.1), probe.get("_step_min", 1e-4), probe.get("_step_max", 2.0),
                probe.get("_eta_plus", 1.2), probe.get("_eta_minus", 0.5))
        oe, om = Rprop(e0.clone(), *args), Rprop(m0.clone(), *args)
        get = lambda: (oe.p, om.p)
        def apply(ge, gm):
            oe.update(ge); om.update(gm)
    elif opt == "adam_rot":
        rot = {}
        for which in ("e", "m"):
            kind = probe.get("_basis" if which == "e" else "_basis_m", probe.get("_basis", "emb"))
            rot[which] = {"kind": kind, "U": basis(kind), "S": None}
        te, tm = RowAdam(lm.d_model, "cpu", True), RowAdam(lm.d_model, "cpu", True)
        te.add(e0 @ rot["e"]["U"]); tm.add(m0 @ rot["m"]["U"])
        get = lambda: (te.p @ rot["e"]["U"].T, tm.p @ rot["m"]["U"].T)
        stepno = [0]
        def apply(ge, gm):
            stepno[0] += 1
            for tab, g, r in ((te, ge, rot["e"]), (tm, gm, rot["m"])):
                if r["kind"] == "grad":
                    u = g / g.norm(dim=1, keepdim=True).clamp_min(1e-12)
                    c = u.T @ u / len(u)
                    b = probe.get("_beta_s", 0.9)
                    r["S"] = c if r["S"] is None else b * r["S"] + (1 - b) * c
                    if stepno[0] % probe.get("_every", 10) == 1:
                        new = torch.linalg.eigh(r["S"] + 1e-6 * torch.eye(len(c)))[1]
                        x = tab.p @ r["U"].T
                        tab.ea = tab.ea @ r["U"].T @ new
                        tab.p = x @ new
                        r["U"] = new
                tab.step(g @ r["U"], rec)
    else:
        raise SystemExit(f"unknown _opt {opt}")
    nf = probe.get("_n_fit", n)
    tgt_v, ntok_v = tgt[:, :nf], torch.full((B,), nf)
    solved = torch.full((B,), -1)
    first_right = torch.full((B, nf), -1)
    t0 = time.time()
    for step in range(1, cap + 1):
        pe, pm = get()
        e = pe.detach().requires_grad_(); m = pm.detach().requires_grad_()
        logits = fit.onepass.logits(e, m, nf)
        loss_r, hits = row_losses(logits, tgt_v, ntok_v, rec.loss, rec.wrong_weight)
        if probe.get("_loss") == "ce_masked":
            zt = logits.gather(-1, tgt_v.unsqueeze(-1)).squeeze(-1)
            other = logits.scatter(-1, tgt_v.unsqueeze(-1), float("-inf")).max(-1).values
            keep = ((zt - other) < probe.get("_margin", 2.0)).float().detach()
            ce = torch.nn.functional.cross_entropy(logits.transpose(1, 2), tgt_v, reduction="none")
            loss_r = (ce * keep).sum(1) / nf
        ge, gm = torch.autograd.grad(loss_r.sum(), [e, m])
        first_right[hits & (first_right < 0)] = step
        acc = hits.float().mean(1)
        new = (acc == 1) & (solved < 0)
        solved[new] = step
        if "_save" in probe:  # e, m share storage with the optimiser's tables: copy now
            keep = new | (solved < 0)
            if step == 1:
                snap_e, snap_m = e.detach().clone(), m.detach().clone()
            snap_e[keep], snap_m[keep] = e.detach()[keep], m.detach()[keep]
        if step % 10 == 0 or step == 1:
            print(f"  step {step:4d} loss {loss_r.mean():.3f} acc {' '.join(f'{a:.2f}' for a in acc.tolist())}"
                  f" |e| {e.norm(dim=1).mean():.1f} |m| {m.norm(dim=1).mean():.1f}", flush=True)
        if bool((solved > 0).all()):
            break
        apply(ge, gm)
    s = [int(v) if v > 0 else cap for v in solved.tolist()]
    if "_save" in probe:  # each row as it was when first solved (unsolved rows: last step)
        torch.save({"e": snap_e, "m": snap_m, "solved": solved, "texts": texts}, probe["_save"])
    for r in range(B):
        print(f"  row {r} first right per position: {first_right[r].tolist()}")
    print(f"VARIANT {label}: steps {s} median nat {sorted(s[:k])[k//2]} rand {sorted(s[k:])[k//2]}"
          f" solved {(solved>0).sum().item()}/{B} ({time.time()-t0:.0f}s)", flush=True)
