"""Probe (2026-11-23): an amortised start. Fit many training texts from the shipped (e0, m0), regress
their solutions on features of the text, and start each evaluation text at e0 + W phi(text).

  python docs/research/learned-starts/large-batch-stages/gpu_amort.py MODEL.gguf TEXTS.json OUTDIR [key=value ...]
  .venv/bin/python docs/research/learned-starts/large-batch-stages/gpu_amort.py tiny-random .carry/texts-big.json /tmp/amort \\
      n_train=64 gen_cap=20 eval_cap=20 n_eval=4 batch=32 use_unsolved=1 loop=2  # tiny, 30 s

Stages (each result line also goes to OUTDIR/results.jsonl):
  gen   the default recipe (lr 0.2, cosine 300) from the shipped start on `n_train` texts per
        source (big|32|*, then train|32|*), cap gen_cap, batch `batch`, within gen_budget
        seconds; solutions saved to OUTDIR/solutions.pt (or read from `solutions=PATH`).
  feat  features of every text: tok0 (input embedding of t_0), tok4 (t_0..t_3 and the mean of
        all), hid (final and middle hidden state means of the model reading sink + text, + tok0),
        all (every position's embedding, dual ridge).
  ridge per feature set, ridge from features to (e - e0, m - m0) on the solved texts; 10 % held
        out for R^2 and the ridge strength; refit on all; W saved to OUTDIR/W-<feat>.pt.
  eval  the 16 + 16 N=32 evaluation texts at cap eval_cap, `default` recipe: from the shipped
        start, then from each predictor (e and m both, or e only), through proto.fit.Fitter.
Everything in fp32 with TF32 off, as ../gpu-stages/gpu_probe.py.
"""
import json
import math
import sys
import time
from pathlib import Path

import torch

from eval.recipes import summarise
from proto.arrangement import prefix_ids
from proto.fit import FitRow, Fitter, get_recipe
from proto.models import state_sha256, load_model

model_path, texts_path, outdir = sys.argv[1:4]
cfg = {"n_train": 4096, "gen_cap": 150, "eval_cap": 300, "n_eval": 16, "batch": 512,
       "gen_budget": 330.0, "feats": "tok0,tok4,hid,all", "solutions": "", "lam": "",
       "eval_feats": "", "loop": 0, "use_unsolved": 0, "e_only": 0}
for a in sys.argv[4:]:
    k, v = a.split("=", 1)
    if k not in cfg:
        sys.exit(f"unknown key {k}")
    cfg[k] = type(cfg[k])(v)
out = Path(outdir)
out.mkdir(parents=True, exist_ok=True)
T0 = time.time()
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
lm = load_model(model_path, dtype="float32", verbose=False)
dev = lm.device
print(f"model {model_path} on {dev}, state sha256 {state_sha256(lm.model)} cfg {cfg}", flush=True)
V = lm.model.config.vocab_size
texts = {k: [[t % V for t in x] for x in v] for k, v in json.loads(Path(texts_path).read_text()).items()}
d = lm.d_model
if d == 576:
    s = torch.load("proto/starts/smollm2-135m.pt", map_location="cpu", weights_only=True)
    e0, m0 = s["e"].float(), s["m"].float()
else:
    e0, m0 = torch.zeros(d), torch.zeros(d)
SRC = ("britannica", "random-words")


def record(rec):
    rec["t"] = round(time.time() - T0, 1)
    with open(out / "results.jsonl", "a") as f:
        f.write(json.dumps(rec) + "\n")


def recipe(cap):
    return get_recipe("default", max_steps=cap, start="")


# ---- gen
if cfg["solutions"]:
    sol = torch.load(cfg["solutions"], map_location="cpu", weights_only=False)
else:
    pool = []
    for src in SRC:
        p = texts.get(f"big|32|{src}", []) + texts[f"train|32|{src}"]
        pool += [(src, t) for t in p[: cfg["n_train"]]]
    # interleave sources so a budget cut keeps both
    pool = [x for pair in zip(pool[: len(pool) // 2], pool[len(pool) // 2:]) for x in pair]
    fitter = Fitter(lm, recipe(cfg["gen_cap"]), batch_size=cfg["batch"])
    fitter.start = (e0, m0)
    sol = {"tokens": [], "src": [], "e": [], "m": [], "steps": [], "solved": []}
    chunk = 4 * cfg["batch"]
    t_gen = time.time()
    for c0 in range(0, len(pool), chunk):
        part = pool[c0: c0 + chunk]
        res = fitter.fit([FitRow(list(t), f"g{c0 + i}") for i, (_, t) in enumerate(part)])
        for (src, t), r in zip(part, res):
            sol["tokens"].append(t)
            sol["src"].append(src)
            sol["e"].append(r.e)
            sol["m"].append(r.m)
            sol["steps"].append(r.steps)
            sol["solved"].append(r.solved)
        el = time.time() - t_gen
        print(f"gen {len(sol['e'])}/{len(pool)} solved {sum(sol['solved'])} {el:.0f}s", flush=True)
        if el > cfg["gen_budget"]:
            break
    sol["e"], sol["m"] = torch.stack(sol["e"]), torch.stack(sol["m"])
    torch.save(sol, out / "solutions.pt")
    st = sorted(sol["steps"])
    record({"stage": "gen", "n": len(st), "solved": sum(sol["solved"]),
            "median_steps": st[len(st) // 2], "seconds": round(time.time() - t_gen, 1)})

# ---- feat
sink = torch.tensor(prefix_ids(lm.tokenizer, "sink"), dtype=torch.long)
feat_names = cfg["feats"].split(",")


@torch.no_grad()
def features(token_lists):
    ids = torch.tensor(token_lists, dtype=torch.long)  # all N=32
    emb = lm.embed(ids.to(dev)).float()               # [B, N, d]
    f = {"tok0": emb[:, 0], "tok4": torch.cat([emb[:, :4].flatten(1), emb.mean(1)], 1),
         "all": emb.flatten(1)}
    if "hid" in feat_names:
        hs = []
        for b0 in range(0, len(ids), 256):
            x = torch.cat([sink.to(dev).expand(len(ids[b0:b0 + 256]), -1), ids[b0:b0 + 256].to(dev)], 1)
            o = lm.model(input_ids=x, output_hidden_states=True, use_cache=False)
            h = o.hidden_states
            hs.append(torch.cat([h[-1][:, 1:].mean(1), h[len(h) // 2][:, 1:].mean(1),
                                 emb[b0:b0 + 256, 0]], 1).float())
        f["hid"] = torch.cat(hs)
    return {k: v.double() for k, v in f.items() if k in feat_names}


ok = torch.tensor(sol["solved"]) | bool(cfg["use_unsolved"])  # the tiny model solves nothing
toks = [t for t, s in zip(sol["tokens"], ok.tolist()) if s]
Y = torch.cat([sol["e"][ok] - e0, sol["m"][ok] - m0], 1).double().to(dev)
F_train = features(toks)
n = len(toks)
g = torch.Generator().manual_seed(0)
perm = torch.randperm(n, generator=g)
ho, tr = perm[: n // 10].to(dev), perm[n // 10:].to(dev)


def ridge(Xtr, Ytr, lam_rel):
    """W, mu_x, mu_y for centred ridge; dual form when features outnumber samples."""
    mx, my = Xtr.mean(0), Ytr.mean(0)
    X, Yc = Xtr - mx, Ytr - my
    if X.shape[1] <= X.shape[0]:
        G = X.T @ X
        lam = lam_rel * G.diagonal().mean()
        W = torch.linalg.solve(G + lam * torch.eye(len(G), device=G.device, dtype=G.dtype), X.T @ Yc)
    else:
        K = X @ X.T
        lam = lam_rel * K.diagonal().mean()
        A = torch.linalg.solve(K + lam * torch.eye(len(K), device=K.device, dtype=K.dtype), Yc)
        W = X.T @ A
    return W, mx, my


def r2(P, Yt):
    return {"e": float(1 - ((P[:, :d] - Yt[:, :d]) ** 2).sum() / ((Yt[:, :d] - Yt[:, :d].mean(0)) ** 2).sum()),
            "m": float(1 - ((P[:, d:] - Yt[:, d:]) ** 2).sum() / ((Yt[:, d:] - Yt[:, d:].mean(0)) ** 2).sum())}


preds = {}
lams = [float(x) for x in cfg["lam"].split(",")] if cfg["lam"] else [1e-3, 1e-2, 1e-1, 1.0, 10.0]
for name in feat_names:
    X = F_train[name]
    best = None
    for lr_ in lams:
        W, mx, my = ridge(X[tr], Y[tr], lr_)
        q = r2((X[ho] - mx) @ W + my, Y[ho])
        print(f"ridge {name} dim {X.shape[1]} lam {lr_:g}: held-out R2 e {q['e']:.3f} m {q['m']:.3f}", flush=True)
        if best is None or q["e"] > best[1]["e"]:
            best = (lr_, q)
    W, mx, my = ridge(X, Y, best[0])
    preds[name] = (W.float(), mx.float(), my.float())
    torch.save({"W": W.float().cpu(), "mx": mx.float().cpu(), "my": my.float().cpu(),
                "lam": best[0], "r2": best[1], "feat": name, "n": n}, out / f"W-{name}.pt")
    record({"stage": "ridge", "feat": name, "dim": X.shape[1], "n": n, "lam": best[0], **best[1]})
    del X

# ---- eval
ev = {src: texts[f"eval|32|{src}"][: cfg["n_eval"]] for src in SRC}
ev_all = ev[SRC[0]] + ev[SRC[1]]
F_ev = features(ev_all)


def eval_fit(name, deltas=None, use_m=True, scale=1.0):
    rows, srcs = [], []
    for src in SRC:
        for i, t in enumerate(ev[src]):
            rows.append(FitRow(list(t), key=f"{src}{i}"))
            srcs.append(src)
    fitter = Fitter(lm, recipe(cfg["eval_cap"]), batch_size=len(rows))
    fitter.start = (e0, m0)
    if deltas is not None:
        table = {r.key: dl for r, dl in zip(rows, deltas)}
        fitter.row_center = lambda row: {"e": scale * table[row.key][:d],
                                         **({"m": scale * table[row.key][d:]} if use_m else {})}
    t0 = time.time()
    res = fitter.fit(rows)
    rec = {"stage": "eval", "name": name, "seconds": round(time.time() - t0, 1), "by_source": {}}
    for src in SRC:
        sm = summarise([[r] for r, s in zip(res, srcs) if s == src], cfg["eval_cap"])
        rec["by_source"][src] = {k: sm[k] for k in ("solved", "median", "p90", "row_steps", "steps")}
        print(f"  eval {name:22s} {src:12s} solved {sm['solved']}/{len(sm['steps'])} median "
              f"{sm['median']:5.1f} p90 {sm['p90']:5.1f} row-steps {sm['row_steps']}", flush=True)
    allsteps = sorted(rec["by_source"][SRC[0]]["steps"] + rec["by_source"][SRC[1]]["steps"])
    rec["pooled_median"] = (allsteps[len(allsteps) // 2 - 1] + allsteps[len(allsteps) // 2]) / 2
    print(f"  eval {name}: pooled median {rec['pooled_median']} ({rec['seconds']} s)", flush=True)
    record(rec)


eval_fit("shipped")
for name in (cfg["eval_feats"].split(",") if cfg["eval_feats"] else feat_names):
    W, mx, my = preds[name]
    P = ((F_ev[name].float() - mx) @ W + my).cpu()
    eval_fit(f"pred-{name}", P)
    if cfg["e_only"]:
        eval_fit(f"pred-{name}-e-only", P, use_m=False)

# ---- batched vs per-text loop on this device (same recipe, same texts)
if cfg["loop"]:
    k = cfg["loop"]
    ts = ev_all[:k]
    t0 = time.time()
    for i, t in enumerate(ts):
        f1 = Fitter(lm, recipe(cfg["eval_cap"]), batch_size=1)
        f1.start = (e0, m0)
        r1 = f1.fit([FitRow(list(t), key=f"l{i}")])
    t_loop = time.time() - t0
    fb = Fitter(lm, recipe(cfg["eval_cap"]), batch_size=len(ts))
    fb.start = (e0, m0)
    t0 = time.time()
    rb = fb.fit([FitRow(list(t), key=f"l{i}") for i, t in enumerate(ts)])
    t_b = time.time() - t0
    record({"stage": "loop", "texts": k, "loop_seconds": round(t_loop, 2),
            "batched_seconds": round(t_b, 2), "ratio": round(t_loop / t_b, 2)})
    print(f"loop {k} texts: per-text loop {t_loop:.1f}s, batched {t_b:.1f}s, x{t_loop / t_b:.2f}",
          flush=True)
print(f"done {time.time() - T0:.0f}s", flush=True)
