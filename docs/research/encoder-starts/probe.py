"""Steps to an exact solve from the shipped encoder's e under several recipes, against e0 with
the corpus recipe, on eval.bench_corpus's texts (configs/data_gen/speedup.yaml: 48 windows of
the plays + 16 random-word texts of 8 tokens the encoder never trained on).

  python docs/research/encoder-starts/probe.py > docs/research/encoder-starts/probe.jsonl
  python docs/research/encoder-starts/probe.py shrink >> docs/research/encoder-starts/probe.jsonl

One line per arm: every text's steps to solve (None = unsolved at the cap), its accuracy at
K = 0, 5, 10, 20, 50, and the row-steps. No tail restarts and no restarts, so each arm's
distribution is the recipe's alone; combine.py then prices "R steps from the encoder, then
from e0". The e0 arm starts at the learned start's e0 (m frozen at its m0), as the corpus
does; the encoder arms run their recipe for the whole budget from the encoder's e.
"""
import dataclasses
import json
import sys
import time

import torch

from data_gen.build import BuildConfig, corpus_start
from data_gen.texts import corpus_texts
from proto import config as C
from proto.fit import FitRow, Fitter, get_recipe, start_rows_at
from proto.models import load_model
from proto.providers import start_record, text_starts

CAP = 200
TRACE = (0, 5, 10, 20, 50)


def shrink_arms(base):
    """e0 + a (e - e0) with the corpus recipe itself (its noise and schedule): the learned
    start is a point the recipe's steps are good from; the encoder only nudges it."""
    return {f"shrink {a} default": (dataclasses.replace(base, restart_after=0), a)
            for a in (0.25, 0.5)}


def arms(base):
    enc = lambda **kw: dataclasses.replace(base, init_std=1e-6, restart_after=0, **kw)
    return {
        "e0 default": (dataclasses.replace(base, restart_after=0), False),
        "enc default (no noise)": (enc(), True),
        "enc const 0.3": (enc(lr=0.3, schedule="constant"), True),
        "enc cos 0.3/60": (enc(lr=0.3, schedule="cosine", schedule_steps=60), True),
    }


def main():
    torch.set_num_threads(1)
    cfg = C.load(BuildConfig, "configs/data_gen/speedup.yaml")
    lm = load_model(cfg.model, **start_record("default"))
    texts, _ = corpus_texts(cfg.sources, lm.tokenize, lm.detokenize, cfg.seed)
    toks = [t.token_ids for t in texts]
    e, m, _ = text_starts("default", lm, toks)
    e0, m0 = corpus_start(lm, get_recipe("default"))
    print(f"encoder m == m0: {torch.equal(m.float(), m0.float())}", file=sys.stderr)
    base = get_recipe("default", max_steps=CAP)
    shrink = sys.argv[1:] == ["shrink"]
    for name, (recipe, how) in (shrink_arms(base) if shrink else arms(base)).items():
        t0 = time.time()
        f = Fitter(lm, recipe, batch_size=64, e_center=e0)
        if shrink:     # the recipe's own start and noise, around the shrunk e
            f.row_center = lambda row, a=how: {"e": a * (e[int(row.key)] - e0)}
        elif how:      # the whole budget from the encoder's e, with this recipe
            start_rows_at(f, lambda row: e[int(row.key)], recipe)
        rows = [FitRow(list(t), str(i), 0) for i, t in enumerate(toks)]
        res = f.fit(rows, m_mode="frozen", m=m, trace=TRACE)
        steps = [r.steps if r.solved else None for r in res]
        acc = {k: sum(r.trace.get(k, r.accuracy) for r in res) / len(res) for k in TRACE}
        print(json.dumps({"arm": name, "solved": sum(s is not None for s in steps),
                          "row_steps": sum(r.steps for r in res), "acc": acc,
                          "steps": steps, "seconds": round(time.time() - t0, 1)}), flush=True)
        print(f"{name}: {sum(s is not None for s in steps)}/{len(res)}, row-steps "
              f"{sum(r.steps for r in res)}, {time.time() - t0:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
