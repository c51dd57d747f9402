"""Bit-identity of a refactor on the tiny model: fit, decode, paths and an encoder step.

  python docs/research/house/bit_identity.py OUT.pt          # with the tree to check
  PYTHONPATH=/path/to/other/checkout python docs/research/house/bit_identity.py OTHER.pt
  python docs/research/house/bit_identity.py --compare A.pt B.pt

Each run records the exact tensors (fitted e and m, steps, accuracies, decoded tokens, path
accuracies and the trained control point, an encoder's loss, accuracy, gradients and weights
after one Adam step) of a fixed set of cases; --compare says which differ in any bit.
"""
import sys

import torch


def cases() -> dict:
    from proto.fit import FitRow, Fitter, get_recipe
    from proto.decode import autoregressive, one_pass
    from proto.models import load_model
    from proto import paths
    lm = load_model("tiny-random", device="cpu")
    texts = [lm.tokenize(t) for t in ("hello there", "abc", "one two three", "xyz q")]
    rows = [FitRow(t, str(i), 0) for i, t in enumerate(texts)]
    out = {}
    for name, recipe, kw, fkw in (
            ("plain", get_recipe("default_v1", max_steps=40), {}, {}),
            ("tail", get_recipe("default_v1", max_steps=40), {"tail_restarts": 2,
                                                              "tail_after": 0}, {}),
            ("ce_wrong", get_recipe("default_v1", max_steps=30, loss="ce_wrong"), {}, {}),
            ("unit_m", get_recipe("default_v1", max_steps=30), {},
             {"m_mode": "unit", "group_size": 2}),
            ("frozen_m", get_recipe("default_v1", max_steps=30), {},
             {"m_mode": "frozen", "m": torch.randn(lm.d_model, generator=torch.Generator()
                                                   .manual_seed(1)) * 0.1}),
            ("mem_ar", get_recipe("default_v1", max_steps=30, arrangement="mem_ar"), {}, {})):
        f = Fitter(lm, recipe, batch_size=3, **kw)
        res = f.fit(rows, **fkw)
        out[f"fit/{name}/e"] = torch.stack([r.e for r in res])
        if res[0].m is not None:
            out[f"fit/{name}/m"] = torch.stack([r.m for r in res])
        out[f"fit/{name}/steps"] = torch.tensor([r.steps for r in res])
        out[f"fit/{name}/acc"] = torch.tensor([r.accuracy for r in res])
        for i, (r, t) in enumerate(zip(res, texts)):
            out[f"decode/{name}/{i}"] = (autoregressive(lm, f.arr, r.e, len(t))
                                         if name == "mem_ar" else
                                         one_pass(lm, f.arr, r.e, r.m, len(t)))
        if name == "plain":
            arr = f.arr
    a = Fitter(lm, get_recipe("default_v1", max_steps=60), batch_size=2, seed=0).fit(rows[:1])
    b = Fitter(lm, get_recipe("default_v1", max_steps=60), batch_size=2, seed=7).fit(rows[:1])
    p1, p2 = paths.as_point(a[0].e, a[0].m), paths.as_point(b[0].e, b[0].m)
    out["paths/linear"] = torch.tensor(paths.linear(lm, arr, texts[0], p1, p2, 11).accuracy)
    bz = paths.bezier(lm, arr, texts[0], p1, p2, steps=20, check_every=5, grid=11)
    out["paths/bezier_acc"] = torch.tensor(bz.accuracy)
    out["paths/bezier_control"] = bz.control
    out.update(encoder_step(texts))
    return out


def encoder_step(texts) -> dict:
    from encoder.config import ModelConfig
    from encoder.losses import Decoder
    from encoder.models import Encoder, pad_batch
    from proto.arrangement import Arrangement, prefix_ids
    from proto.models import load_model
    out = {}
    for kind, kw in (("lora", {"lora_rank": 4}), ("positional", {"positions": 16}),
                     ("scratch", {"scratch_dim": 32, "scratch_heads": 4})):
        lm = load_model("tiny-random", device="cpu")
        torch.manual_seed(0)
        enc = Encoder(ModelConfig(kind=kind, **kw), lm, torch.zeros(lm.d_model),
                      torch.randn(lm.d_model) * 0.1)
        dec = Decoder.of(lm, Arrangement("e_m", prefix_ids(lm.tokenizer, "sink")))
        ids, mask = pad_batch(texts, "cpu")
        opt = torch.optim.Adam([p for p in enc.parameters() if p.requires_grad], lr=1e-2)
        for step in range(2):
            e = enc({"ids": ids, "mask": mask, "texts": []})
            with enc.decoding():
                loss, acc = dec.loss(e, enc.m, texts, focal_gamma=1.0 if step else 0.0)
            opt.zero_grad()
            loss.backward()
            opt.step()
            out[f"encoder/{kind}/loss{step}"] = loss.detach().reshape(1)
            out[f"encoder/{kind}/acc{step}"] = acc
        for n, p in enc.named_parameters():
            if p.requires_grad:
                out[f"encoder/{kind}/{n}"] = p.detach().clone()
        with enc.decoding():
            out[f"encoder/{kind}/accuracy"] = dec.accuracy(e.detach(), enc.m, texts)
    return out


def compare(a_path, b_path) -> int:
    a, b = torch.load(a_path), torch.load(b_path)
    bad = [k for k in sorted(set(a) | set(b))
           if k not in a or k not in b or a[k].shape != b[k].shape or not torch.equal(a[k], b[k])]
    print(f"{len(set(a) & set(b))} tensors compared; {len(bad)} differ"
          + (": " + ", ".join(bad) if bad else " (bit-identical)"))
    return 1 if bad else 0


if __name__ == "__main__":
    if sys.argv[1] == "--compare":
        sys.exit(compare(sys.argv[2], sys.argv[3]))
    torch.save(cases(), sys.argv[1])
    print(f"wrote {sys.argv[1]}")
