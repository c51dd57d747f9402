"""Probe (2026-11-23): learned starts and recipes at N=32, run where a GPU is lent (or here, slowly).

  python docs/research/learned-starts/gpu-stages/gpu_probe.py MODEL.gguf TEXTS.json JOBS.json OUTDIR
  .venv/bin/python docs/research/learned-starts/gpu-stages/gpu_probe.py tiny-random .carry/texts.json \\
      docs/research/learned-starts/gpu-stages/jobs-tiny.json /tmp/gpu-stages      # tiny CPU run, seconds

Everything goes through the library (proto.fit.Fitter, proto.meta.learn_start) on the model in
fp32, so step counts mean what they mean on this CPU. TEXTS.json comes from make_texts.py:
`eval|N|source` are the evaluation texts (seed 0, 16 per source), `train|32|source` other texts
for meta-learning. JOBS.json is a list of jobs run in order:
  {"job": "fit", "name": ..., "start": "shipped" | "origin" | "<meta job name>",
   "recipe": "default", "overrides": {...}, "n": 32, "cap": 300, "restarts": 1}
      fits the 16 + 16 evaluation texts of length n from that start; prints and records per
      source eval.recipes.summarise's numbers: solved within the cap, median and p90 steps
      (unsolved = cap; p90 the nearest rank), row-steps. The runs in gpu/results-2..5.jsonl
      recorded an interpolated p90; the tables in docs/research/learned-starts give the nearest
      rank, computed from their per-text steps.
  {"job": "meta", "name": ..., "init": "shipped" | "origin" | "<meta job name>",
   "recipe": "default_v1", "overrides": {"lr": 0.2}, "iters": 30, "per_source": 16,
   "inner_steps": 50, "eps": 1.0, "offset": 0}
      Reptile (proto.meta.learn_start) on training texts; saves OUTDIR/<name>.pt {"e", "m"}.
'shipped' is proto/starts/smollm2-135m.pt read without its weights check: the probe prints the
model's state hash so it can be compared with the CPU's (3c5fdee9... for SmolLM2 in fp32).
Results: OUTDIR/results.jsonl (one line per job, appended as each ends).
"""
import dataclasses
import json
import sys
import time
from pathlib import Path

import torch

from eval.recipes import summarise
from proto.fit import FitRow, Fitter, get_recipe
from proto.meta import learn_start
from proto.models import state_sha256, load_model

model_path, texts_path, jobs_path, outdir = sys.argv[1:5]
out = Path(outdir)
out.mkdir(parents=True, exist_ok=True)
texts = json.loads(Path(texts_path).read_text())
jobs = json.loads(Path(jobs_path).read_text())
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
lm = load_model(model_path, dtype="float32", verbose=False)
print(f"model {model_path} on {lm.device}, state sha256 {state_sha256(lm.model)}", flush=True)
V = lm.model.config.vocab_size  # the tiny model's vocabulary is smaller: fold ids into it
texts = {k: [[t % V for t in x] for x in v] for k, v in texts.items()}
starts = {"origin": None}
if lm.d_model == 576:
    s = torch.load("proto/starts/smollm2-135m.pt", map_location="cpu", weights_only=True)
    starts["shipped"] = (s["e"].float(), s["m"].float())


def get_start(name):
    if name.startswith("file:"):  # a start saved by an earlier meta job ({"e", "m"})
        d = torch.load(name[5:], map_location="cpu", weights_only=True)
        starts[name] = (d["e"].float(), d["m"].float())
    return starts[name]


def record(rec):
    with open(out / "results.jsonl", "a") as f:
        f.write(json.dumps(rec) + "\n")


def fit_job(j):
    n, cap = j.get("n", 32), j.get("cap", 300)
    recipe = get_recipe(j.get("recipe", "default"), max_steps=cap, start="",
                        **j.get("overrides", {}))
    rows, srcs = [], []
    for src in ("britannica", "random-words"):
        for i, t in enumerate(texts[f"eval|{n}|{src}"][: j.get("n_texts", 16)]):
            for r in range(j.get("restarts", 1)):
                rows.append(FitRow(list(t), key=f"{src}{i}", restart=r))
                srcs.append(src)
    fitter = Fitter(lm, recipe, batch_size=j.get("batch_size", len(rows)))
    fitter.start = get_start(j.get("start", "shipped"))
    t0 = time.time()
    res = fitter.fit(rows, race=j.get("restarts", 1) > 1)
    secs = time.time() - t0
    rec = {"job": "fit", **j, "seconds": round(secs, 1), "row_steps": 0, "by_source": {}}
    for src in ("britannica", "random-words"):
        by_text = {}
        for r, s in zip(res, srcs):
            if s == src:
                by_text.setdefault(r.key, []).append(r)
        sm = summarise(list(by_text.values()), cap)
        rec["by_source"][src] = {"solved": sm["solved"], "texts": len(sm["steps"]),
                                 "median": sm["median"], "p90": sm["p90"],
                                 "steps": sm["steps"], "row_steps": sm["row_steps"]}
        rec["row_steps"] += sm["row_steps"]
        print(f"  {j['name']:28s} {src:12s} solved {sm['solved']}/{len(sm['steps'])} median "
              f"{sm['median']:5.1f} p90 {sm['p90']:5.1f} row-steps {sm['row_steps']}",
              flush=True)
    print(f"  {j['name']}: {secs:.0f} s, {rec['row_steps']} row-steps", flush=True)
    record(rec)


def meta_job(j):
    n, per, iters = j.get("n", 32), j.get("per_source", 16), j.get("iters", 30)
    off = j.get("offset", 0)
    recipe = get_recipe(j.get("recipe", "default_v1"), **j.get("overrides", {"lr": 0.2}))
    pools = [texts[f"train|{n}|{src}"] for src in ("britannica", "random-words")]
    batches = []
    for it in range(iters):
        b = []
        for pool in pools:
            b += [pool[(off + it * per + k) % len(pool)] for k in range(per)]
        batches.append(b)
    t0 = time.time()

    def progress(h, e0, m0):
        if h["iter"] % 5 == 0 or h["iter"] == iters - 1:
            print(f"  {j['name']} iter {h['iter'] + 1}/{iters}: loss {h['loss']:.3f} acc "
                  f"{h['accuracy']:.3f} solved {h['solved']}/{h['rows']} |e0| {h['norm_e0']:.1f}"
                  f" |m0| {h['norm_m0']:.1f} {time.time() - t0:.0f}s", flush=True)
        torch.save({"e": e0.clone(), "m": m0.clone(), "iter": h["iter"], "job": j},
                   out / f"{j['name']}.pt")

    e0, m0, hist = learn_start(lm, recipe, batches, j.get("inner_steps", 50), j.get("eps", 1.0),
                               start=get_start(j.get("init", "shipped")), progress=progress)
    starts[j["name"]] = (e0, m0)
    record({"job": "meta", **j, "seconds": round(time.time() - t0, 1), "history": hist})


for j in jobs:
    print(f"== {j['job']} {j['name']}", flush=True)
    t = time.time()
    (fit_job if j["job"] == "fit" else meta_job)(j)
    print(f"== {j['name']} done in {time.time() - t:.0f} s", flush=True)
