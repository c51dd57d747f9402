"""Learned starts (proto.start) and learning them (proto.meta) on the tiny in-process model."""
import dataclasses
import json

import pytest
import torch

from proto import meta, start
from proto.fit import FitRow, Fitter, get_recipe
from proto.start import load_start, save_start


def _rows(lm, texts):
    return [FitRow(lm.tokenize(t), t) for t in texts]


def test_fit_starts_at_the_learned_start(tiny, tmp_path):
    d = tiny.d_model
    e0, m0 = torch.zeros(d), torch.zeros(d)
    e0[0], m0[1] = 50.0, -50.0   # far from anything the noise or 1 tiny step can reach
    path = tmp_path / "s.pt"
    save_start(path, e0, m0, tiny)
    rec = get_recipe("default_v1", lr=1e-6, max_steps=1, start=str(path))
    res = Fitter(tiny, rec).fit(_rows(tiny, ["hello world", "a bird"]))
    for r in res:
        assert torch.cosine_similarity(r.e, e0, dim=0) > 0.99
        assert torch.cosine_similarity(r.m, m0, dim=0) > 0.99
    plain = Fitter(tiny, dataclasses.replace(rec, start="")).fit(_rows(tiny, ["hello world"]))
    assert torch.cosine_similarity(plain[0].e, e0, dim=0) < 0.5
    # e0 was learned with a trained m0: with a frozen m neither is used
    frozen = Fitter(tiny, rec).fit(_rows(tiny, ["hello world"]), m_mode="frozen",
                                   m=torch.zeros(d))
    assert torch.cosine_similarity(frozen[0].e, e0, dim=0) < 0.5


def test_learned_without_a_packaged_start_is_the_plain_init(tiny):
    assert start.packaged_start(tiny) is None
    rec = get_recipe("default_v1", max_steps=5)
    a = Fitter(tiny, rec).fit(_rows(tiny, ["hello world"]))
    with pytest.warns(UserWarning, match="no learned start is shipped"):
        fb = Fitter(tiny, dataclasses.replace(rec, start="learned"))
    b = fb.fit(_rows(tiny, ["hello world"]))
    assert torch.equal(a[0].e, b[0].e) and torch.equal(a[0].m, b[0].m)


def test_bad_start_files_are_refused(tiny, tmp_path):
    d = tiny.d_model
    with pytest.raises(ValueError, match="not found"):
        load_start(str(tmp_path / "missing.pt"), tiny)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="cannot read"):
        load_start(str(junk), tiny)
    other = tmp_path / "other.pt"
    save_start(other, torch.zeros(d), torch.zeros(d), tiny)
    data = torch.load(other)
    data["weights_sha256"] = "0" * 64
    torch.save(data, other)
    with pytest.raises(ValueError, match="other weights"):
        load_start(str(other), tiny)
    short = tmp_path / "short.pt"
    save_start(short, torch.zeros(d - 1), torch.zeros(d - 1), tiny)
    with pytest.raises(ValueError, match="shape"):
        load_start(str(short), tiny)
    noprefix = tmp_path / "noprefix.pt"
    save_start(noprefix, torch.zeros(d), torch.zeros(d), tiny, prefix="")
    with pytest.raises(ValueError, match="arrangement"):
        load_start(str(noprefix), tiny, "e_m", "sink")
    assert load_start(str(noprefix), tiny, "e_m", "")[0].shape == (d,)
    nan = tmp_path / "nan.pt"
    save_start(nan, torch.full((d,), float("nan")), torch.zeros(d), tiny)
    with pytest.raises(ValueError, match="non-finite"):
        Fitter(tiny, get_recipe("default", start=str(nan)))


def _batches(lm, seed, iters, per=8, n=8):
    g = torch.Generator().manual_seed(seed)
    vocab = lm.model.get_input_embeddings().weight.shape[0]
    return [[torch.randint(3, vocab, (n,), generator=g).tolist() for _ in range(per)]
            for _ in range(iters)]


def test_reptile_start_fits_unseen_texts_sooner_than_the_origin(tiny):
    rec = get_recipe("default_v1", lr=0.05)
    e0, m0, hist = meta.learn_start(tiny, rec, _batches(tiny, 0, 6), inner_steps=10)
    assert len(hist) == 6 and all(h["rows"] == 8 for h in hist)
    held_out = _batches(tiny, 99, 1)[0]
    rows = [FitRow(t, f"held{i}") for i, t in enumerate(held_out)]

    def loss_after(fitter):
        res = fitter.fit(rows, max_steps=10)
        return sum(r.loss for r in res) / len(res)

    origin = Fitter(tiny, rec, batch_size=8)
    learned = Fitter(tiny, rec, batch_size=8)
    learned.start = (e0, m0)
    assert loss_after(learned) < loss_after(origin) - 0.1


def test_meta_command_writes_a_loadable_start(tiny, tmp_path, capsys):
    out = tmp_path / "st" / "start.pt"
    rc = meta.main(["model=tiny-random", "device=cpu", "n_tokens=6", "iters=2", "inner_steps=2",
                    "texts_per_source=2", f"out={out}", "mlflow=false"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["iters"] == 2
    e0, m0 = load_start(str(out), tiny)
    assert e0.shape == (tiny.d_model,) and torch.isfinite(m0).all()
    hist = json.loads((tmp_path / "st" / "start.history.json").read_text())
    assert [h["iter"] for h in hist] == [0, 1]
    assert (tmp_path / "st" / "start.config.yaml").read_text().count("inner_steps: 2") == 1


def test_meta_command_rejects_bad_config(capsys):
    assert meta.main(["iters=0", "mlflow=false"]) == 2
    assert meta.main(["no_such_key=1", "mlflow=false"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("error:") for line in err)


def test_meta_command_goes_on_from_an_init_start(tiny, tmp_path, capsys):
    d = tiny.d_model
    e0, m0 = torch.zeros(d), torch.zeros(d)
    e0[0], m0[1] = 50.0, -50.0   # far from where a random start and two tiny steps can go
    save_start(tmp_path / "init.pt", e0, m0, tiny)
    args = ["model=tiny-random", "device=cpu", "n_tokens=6", "iters=1", "inner_steps=2",
            "texts_per_source=2", "mlflow=false"]
    for name, extra in (("on", [f"init={tmp_path / 'init.pt'}"]), ("off", [])):
        assert meta.main(args + extra + [f"out={tmp_path / name}.pt"]) == 0
    on, _ = load_start(str(tmp_path / "on.pt"), tiny)
    off, _ = load_start(str(tmp_path / "off.pt"), tiny)
    cos = torch.nn.functional.cosine_similarity
    assert cos(on, e0, dim=0) > 0.99 and cos(off, e0, dim=0) < 0.5
    assert meta.main(args + [f"init={tmp_path / 'missing.pt'}", f"out={tmp_path}/x.pt"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("error:")
