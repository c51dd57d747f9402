"""Probe (2026-11-23): a per-coordinate learning rate from where solutions lie (diagonal Meta-SGD).

Adam moves every coordinate by about lr a step, whatever distance that coordinate has to go.
If the solutions' displacements from the shipped start (e - e0, m - m0) are much larger in some
coordinates than others, scaling each coordinate's lr by its displacement scale should let all
coordinates arrive together. This probe measures the displacement scales on texts no study uses,
then reruns the N=32 evaluation (16 + 16 texts, seed 0) with the scaled lr.

  .venv/bin/python -u docs/research/learned-starts/isotropy/precond.py collect OUT.pt [n_per_source=16] [seed=77]
  .venv/bin/python -u docs/research/learned-starts/isotropy/precond.py stats OUT.pt
  .venv/bin/python -u docs/research/learned-starts/isotropy/precond.py eval OUT.pt POWER SEED [CLIP]   # ~13 min

`eval` runs eval.recipes' `default` candidate (N=32, 16+16 texts, cap 300, batch 32) with each
AdamW coordinate's lr multiplied by s_j = (rms_j / mean rms)^POWER, clipped to [1/CLIP, CLIP]
and renormalised to mean 1; POWER=0 is the shipped recipe.
"""
import json
import statistics
import sys
import time

import torch

import proto.fit as F
from proto.sources import sample_texts
from eval.recipes import RecipesConfig, study
from proto.fit import FitRow, Fitter, get_recipe
from proto.models import load_model
from proto.start import load_start


def collect(out, n_per=16, seed=77):
    lm = load_model("smollm2-135m", dtype="float32", verbose=False)
    rec = get_recipe("default", max_steps=200)
    e0, m0 = load_start("learned", lm)
    texts = []
    for src in ("britannica", "random-words"):
        texts += sample_texts(lm.tokenize, src, 32, n_per, seed=seed)
    rows = [FitRow(ids, f"{src}:{i}", 0) for i, (src, ids) in enumerate(texts)]
    t0 = time.time()
    res = Fitter(lm, rec, batch_size=32, seed=seed).fit(
        rows, progress=lambda p: p["step"] % 25 == 0 and print(
            f"step {p['step']}: {p['done']}/{p['total']} done, {p['solved']} solved", flush=True))
    res = sorted(res, key=lambda r: r.index)
    print(f"{sum(r.solved for r in res)}/{len(res)} solved in {time.time() - t0:.0f} s; "
          f"median steps {statistics.median(r.steps for r in res)}", flush=True)
    torch.save({"e": torch.stack([r.e for r in res]), "m": torch.stack([r.m for r in res]),
                "e0": e0, "m0": m0, "solved": torch.tensor([r.solved for r in res]),
                "steps": torch.tensor([r.steps for r in res]),
                "source": [s for s, _ in texts], "seed": seed}, out)


def scales(path, power, clip=4.0):
    d = torch.load(path, weights_only=False)
    ok = d["solved"]
    out = {}
    for k in ("e", "m"):
        rms = (d[k][ok] - d[k + "0"]).pow(2).mean(0).sqrt()
        s = (rms / rms.mean()).pow(power).clamp(1 / clip, clip)
        out[k] = s / s.mean()
    return out


def stats(path):
    d = torch.load(path, weights_only=False)
    ok = d["solved"]
    print(f"{int(ok.sum())}/{len(ok)} solved, median steps {d['steps'].float().median():.0f}")
    for k in ("e", "m"):
        disp = d[k][ok] - d[k + "0"]
        rms = disp.pow(2).mean(0).sqrt()
        q = torch.quantile(rms, torch.tensor([0.0, 0.1, 0.5, 0.9, 0.99, 1.0]))
        top = rms.argsort(descending=True)[:8]
        energy = rms.pow(2).sort(descending=True).values.cumsum(0) / rms.pow(2).sum()
        mean = disp.mean(0)
        print(f"{k}: |start| {d[k + '0'].norm():.1f}, |disp| mean {disp.norm(dim=1).mean():.1f}, "
              f"|mean disp| {mean.norm():.1f}")
        print(f"  per-coord rms quantiles 0/10/50/90/99/100%: "
              + " ".join(f"{v:.3f}" for v in q.tolist()))
        print(f"  max/median {q[-1] / q[2]:.1f}; top coords {top.tolist()} "
              f"rms {[round(v, 2) for v in rms[top].tolist()]}")
        print(f"  energy share of top 1/10/58 coords: {energy[0]:.3f} {energy[9]:.3f} "
              f"{energy[57]:.3f}")
        # same scale across the two sources? (a preconditioner should not be source-specific)
        src = d["source"]
        for s in sorted(set(src)):
            idx = torch.tensor([x == s for x in src]) & ok
            r = (d[k][idx] - d[k + "0"]).pow(2).mean(0).sqrt()
            print(f"  {s}: corr(rms_source, rms_all) {torch.corrcoef(torch.stack([r, rms]))[0, 1]:.2f}")
        a, b = disp[: len(disp) // 2], disp[len(disp) // 2:]
        ra, rb = a.pow(2).mean(0).sqrt(), b.pow(2).mean(0).sqrt()
        print(f"  split-half corr of per-coord rms: {torch.corrcoef(torch.stack([ra, rb]))[0, 1]:.2f}")


def evaluate(path, power, seed, clip=4.0):
    s = scales(path, power, clip)
    for k in ("e", "m"):
        print(f"lr scale {k}: min {s[k].min():.2f} median {s[k].median():.2f} max {s[k].max():.2f}")
    base_step = F.RowAdam.step
    made = [0]
    orig_init = F.RowAdam.__init__

    def init(self, *a, **kw):
        orig_init(self, *a, **kw)
        self.kind = "e" if made[0] % 2 == 0 else "m"   # Fitter.fit builds e's table, then m's
        made[0] += 1

    def step(self, grad, recipe):
        # AdamW's update with lr * s_j: scaling the gradient's step equals scaling lr per
        # coordinate, since the update is lr * m_hat / (sqrt(v_hat) + eps); wd is tiny here.
        p0 = self.p.clone()
        base_step(self, grad, recipe)
        self.p.copy_(p0 + (self.p - p0) * s[self.kind].to(self.p.device))

    F.RowAdam.__init__, F.RowAdam.step = init, step
    cfg = RecipesConfig(lengths=[32], n_texts=16, max_steps=300, batch_size=32, seed=seed,
                        candidates=["default"], mlflow=False,
                        out=f"outputs/precond/p{power}-s{seed}")
    res = study(cfg)
    allsteps = []
    for r in res["results"]:
        allsteps += r["steps"]
    print(json.dumps({"power": power, "seed": seed, "clip": clip,
                      "median": {r["source"]: r["median_steps"] for r in res["results"]},
                      "solved": sum(round(r["solved_frac"] * r["texts"]) for r in res["results"]),
                      "pooled": statistics.median(allsteps),
                      "row_steps": sum(r["row_steps"] for r in res["results"]),
                      "steps": {r["source"]: r["steps"] for r in res["results"]}}))


if __name__ == "__main__":
    cmd, path = sys.argv[1], sys.argv[2]
    if cmd == "collect":
        collect(path, *[int(x) for x in sys.argv[3:5]])
    elif cmd == "stats":
        stats(path)
    else:
        evaluate(path, float(sys.argv[3]), int(sys.argv[4]),
                 *[float(x) for x in sys.argv[5:6]])
