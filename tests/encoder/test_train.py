"""Training on the DeepSpeed engine: exact resume, 1 vs 2 ranks, NaN stop, refused outputs."""
import json
import os
import subprocess
from pathlib import Path

import pytest
import torch

from encoder.core import EncoderError

from .conftest import ROOT, TINY_ENCODER

PY_BIN = ROOT / ".venv" / "bin"


def _losses(out):
    return [r["loss"] for r in json.loads((Path(out) / "history.json").read_text())["train"]]


def test_train_writes_checkpoint_history_and_summary(train_tiny, tmp_path):
    s, t = train_tiny()
    assert s["steps"] == 6 and s["finished"]
    for k in ("eval/one_pass_acc", "eval/exact_match", "eval/knn_acc", "eval/start_acc"):
        assert 0.0 <= s[k] <= 1.0
    # the corpus's fitted e's decode their (solved) texts exactly with the corpus's m
    assert s["eval/optimised_acc"] == 1.0
    out = tmp_path / "run"
    for f in ("encoder.pt", "history.json", "config.yaml", "learning_curve.png", "eval.md"):
        assert (out / f).is_file(), f
    assert len(_losses(out)) == 6
    # only the encoder's weights are in the optimizer, never the frozen decoder's
    opt_params = {id(p) for g in t.engine.optimizer.param_groups for p in g["params"]}
    frozen = [p for n, p in t.engine.module.named_parameters() if not p.requires_grad]
    assert frozen and not any(id(p) in opt_params for p in frozen)


def test_killed_run_resumes_on_the_same_curve(train_tiny, tmp_path):
    train_tiny(out=tmp_path / "straight")
    first, _ = train_tiny("train.stop_after=3", out=tmp_path / "resumed")
    assert first["steps"] == 3 and not first["finished"]
    second, _ = train_tiny(out=tmp_path / "resumed")
    assert second["steps"] == 6
    assert _losses(tmp_path / "resumed") == pytest.approx(_losses(tmp_path / "straight"),
                                                          abs=1e-6)


def test_two_ranks_give_the_one_rank_curve(train_tiny, tmp_path, enc_corpus):
    train_tiny(out=tmp_path / "one")
    env = {**os.environ, "PROTOSPACE_NO_MLFLOW": "1", "DS_ACCELERATOR": "cpu",
           "PATH": f"{PY_BIN}:{os.environ['PATH']}"}
    launcher = str(PY_BIN / "deepspeed") if (PY_BIN / "deepspeed").exists() else "deepspeed"
    r = subprocess.run([launcher, "--no_local_rank", "--num_gpus", "2", "--master_port", "29731",
                        "--module",
                        "encoder.train", "--config", str(TINY_ENCODER),
                        f"out={tmp_path / 'two'}", f"data.corpus={enc_corpus}", "threads=1",
                        "mlflow=false"], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    # the launcher prints its own lines after the ranks' output
    summary = json.loads([ln for ln in r.stdout.splitlines() if ln.startswith("{")][-1])
    assert summary["world"] == 2
    assert _losses(tmp_path / "two") == pytest.approx(_losses(tmp_path / "one"), abs=1e-4)


def test_nan_loss_stops_and_keeps_the_last_checkpoint(train_tiny, tmp_path, monkeypatch):
    out = tmp_path / "nan"
    train_tiny("train.stop_after=3", out=out)
    before = (out / "encoder.pt").read_bytes()
    from encoder import losses

    def nan_loss(self, e, m, toks, focal_gamma=0.0):
        return (e * float("nan")).sum(), torch.zeros(len(toks))
    monkeypatch.setattr(losses.Decoder, "loss", nan_loss)
    with pytest.raises(EncoderError, match="non-finite loss at step 4.*step 3"):
        train_tiny(out=out)
    assert (out / "encoder.pt").read_bytes() == before


def test_another_config_in_out_is_refused_and_untouched(train_tiny, tmp_path):
    out = tmp_path / "r"
    train_tiny("train.stop_after=3", out=out)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    with pytest.raises(EncoderError, match="another config.*train.lr"):
        train_tiny("train.lr=0.5", out=out)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


def _main(capsys, *argv):
    from encoder.train import main
    rc = main(list(argv))
    err = capsys.readouterr().err.strip().splitlines()
    return rc, err[-1] if err else ""


def test_bad_inputs_are_one_error_line(capsys, tmp_path, enc_corpus):
    base = ["--config", str(TINY_ENCODER), f"out={tmp_path / 'x'}", "mlflow=false"]
    rc, line = _main(capsys, *base, "train.nope=1")
    assert rc == 2 and line.startswith("error:") and "nope" in line
    rc, line = _main(capsys, *base, f"data.corpus={tmp_path / 'missing'}")
    assert rc == 2 and "no manifest.json" in line
    # a corpus made with other weights
    other = tmp_path / "other"
    import shutil
    shutil.copytree(enc_corpus, other)
    man = json.loads((other / "manifest.json").read_text())
    man["model"]["weights_sha256"] = "0" * 64
    (other / "manifest.json").write_text(json.dumps(man))
    rc, line = _main(capsys, *base, f"data.corpus={other}")
    assert rc == 2 and "was made with model" in line
    man["model"] = json.loads((enc_corpus / "manifest.json").read_text())["model"]
    man["status"] = "partial"
    (other / "manifest.json").write_text(json.dumps(man))
    rc, line = _main(capsys, *base, f"data.corpus={other}")
    assert rc == 2 and "is partial" in line
    assert not (tmp_path / "x").exists()


def test_nearest_loss_trains_on_raw_text_which_has_no_corpus_targets(tmp_path, enc_corpus):
    from encoder.train import Trainer
    from proto.models import load_model

    from .conftest import encoder_config
    cfg = encoder_config(tmp_path / "near", enc_corpus, "loss.kind=nearest",
                         "loss.nearest_steps=2", "loss.nearest_lr=0.05", "data.raw_fraction=1.0")
    s = Trainer(cfg, lm=load_model("tiny-random", device="cpu"), log=lambda s: None).run()
    assert s["finished"] and s["steps"] == 6
    hist = json.loads((tmp_path / "near" / "history.json").read_text())["train"]
    assert all(r["nearest"] > 0 and 0 <= r["nearest_acc"] <= 1 for r in hist)
    with pytest.raises(ValueError, match="m: learned would never train"):
        encoder_config(tmp_path / "x", enc_corpus, "loss.kind=nearest", "m=learned")


def test_init_from_a_shorter_positional_encoder_grows_its_positions(train_tiny, tmp_path):
    """A positional encoder for 6 positions starts a 9-position run: its per-position maps
    fill the first 6, the new ones start at zero, every other weight is carried over."""
    from encoder import checkpoint as ckpt
    pos = ["model.kind=positional", "model.pooling=positional", "train.steps=2"]
    train_tiny(*pos, "model.positions=6", out=tmp_path / "short")
    train_tiny(*pos, "model.positions=9", f"init_from={tmp_path / 'short'}", "train.lr=1e-12",
               "train.head_lr=1e-12", out=tmp_path / "long")
    a = ckpt.read(str(tmp_path / "short"))["state"]
    b = ckpt.read(str(tmp_path / "long"))["state"]
    assert b["pmap.A"].shape[0] == 9 and a["pmap.A"].abs().sum() > 0
    assert torch.allclose(b["pmap.A"][:6], a["pmap.A"], atol=1e-6)
    assert b["pmap.A"][6:].abs().max() < 1e-6
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a if k != "pmap.A")
    with pytest.raises(Exception, match="another model config"):
        train_tiny(*pos, "model.positions=6", f"init_from={tmp_path / 'long'}",
                   out=tmp_path / "shrink")


def _positional(lm, positions, pos_map, residual, init_from=""):
    from data_gen.stream import StreamConfig
    from encoder.config import DataConfig, EncoderConfig, ModelConfig
    from encoder.models import Encoder
    model = ModelConfig(kind="positional", positions=positions, pos_map=pos_map, pos_rank=8,
                        residual_layers=residual, scratch_dim=32, scratch_heads=4, whiten=True)
    cfg = EncoderConfig(out="unused", llm="tiny-random", m="learned", init_from=init_from,
                        model=model, data=DataConfig(stream=StreamConfig(tokens=1.0)),
                        mlflow=False)
    return cfg, Encoder(model, lm, torch.zeros(lm.d_model), torch.zeros(lm.d_model),
                        train_m=True)


@pytest.mark.parametrize("residual", [0, 1])
@pytest.mark.parametrize("pos_map", ["full", "lowrank", "basis"])
def test_growing_keeps_a_short_texts_e(tiny, tmp_path, pos_map, residual):
    """init_from a 6-position encoder into a 9-position run: texts of up to 6 tokens get the
    e they had, bit for bit, whatever the map's form and with the contextual residual (whose
    transformer reads position embeddings 0..L-1 only, so the rows added for 7..9 never reach
    a shorter text)."""
    from encoder import checkpoint as ckpt
    from encoder.losses import Decoder
    from encoder.models import encode_tokens
    from encoder.train import start_from
    from proto.arrangement import Arrangement, prefix_ids
    torch.manual_seed(0)
    cfg, short = _positional(tiny, 6, pos_map, residual)
    with torch.no_grad():  # every weight nonzero, the residual's zero-init output included
        for p in short.parameters():
            p.normal_(0.0, 0.3)
    dec = Decoder.of(tiny, Arrangement("e_m", prefix_ids(tiny.tokenizer, "sink")))
    ckpt.save(tmp_path / "short.pt", short, cfg, tiny, dec, [6], None, 1)
    cfg9, grown = _positional(tiny, 9, pos_map, residual, init_from=str(tmp_path / "short.pt"))
    start_from(grown, cfg9, tiny)
    toks = [tiny.tokenize(t) for t in ("a cat", "hello!", "ok")]
    assert [len(t) for t in toks] == [5, 6, 2]
    e_short, e_grown = encode_tokens(short, toks), encode_tokens(grown, toks)
    assert e_short.abs().max() > 0 and not torch.equal(e_short[0], short.offset)
    assert torch.equal(e_grown, e_short)
    # one at a time as well (e moves in the last bits with the batch's padded length, so
    # each is compared with the short encoder's e of the same batch)
    for t in toks:
        assert torch.equal(encode_tokens(grown, [t]), encode_tokens(short, [t]))
    assert encode_tokens(grown, [tiny.tokenize("nine toks")]).shape == (1, tiny.d_model)


# The first five training losses of configs/encoder/tiny-positional.yaml (fp32 on a CPU, seed
# 0): re-pin them only for a change that is meant to move the numbers, and say which.
TINY_POSITIONAL_LOSSES = [5.54908, 5.74915, 5.70668, 5.58067, 5.26795]


@pytest.mark.parametrize("prefetch", [2, 0])
def test_tiny_positional_recipe_gives_its_pinned_losses(tiny, tmp_path, prefetch):
    """A silent numeric change anywhere on the training path (the stream's texts, whitening,
    the maps, the decode loss, the optimiser, the schedule, gradient accumulation) moves a
    loss by more than 1e-4; batches prepared ahead (data.prefetch) or on demand are the same."""
    from encoder.config import EncoderConfig
    from encoder.train import Trainer
    from proto import config as C
    cfg = C.load(EncoderConfig, ROOT / "configs" / "encoder" / "tiny-positional.yaml",
                 [f"out={tmp_path}", "mlflow=false", f"data.prefetch={prefetch}"])
    s = Trainer(cfg, lm=tiny, log=lambda s: None).run()
    assert s["finished"] and s["steps"] == len(TINY_POSITIONAL_LOSSES)
    assert _losses(tmp_path) == pytest.approx(TINY_POSITIONAL_LOSSES, rel=1e-4)


def test_noise_on_e_changes_the_training_loss_and_replays_on_resume(train_tiny, tmp_path):
    plain = _losses(train_tiny(out=tmp_path / "plain")[1].cfg.out)
    noisy = _losses(train_tiny("train.e_noise=0.5", out=tmp_path / "noisy")[1].cfg.out)
    assert noisy[0] != plain[0]             # the very first step already sees the noise
    # the noise is a function of the seed and the texts, so a resumed run draws it again
    train_tiny("train.e_noise=0.5", "train.stop_after=3", out=tmp_path / "resumed")
    _, t = train_tiny("train.e_noise=0.5", out=tmp_path / "resumed")
    assert _losses(t.cfg.out) == pytest.approx(noisy, rel=1e-5)


def test_noise_on_e_is_drawn_per_batch_of_texts():
    from types import SimpleNamespace as NS

    from encoder.config import EncoderConfig
    from encoder.train import noise_on_e
    from proto import config as C
    base = {"m": "start", "data": {"stream": {"tokens": 1.0}}}
    cfg = C.from_dict(EncoderConfig, base | {"train": {"e_noise": 2.0}})
    e = torch.zeros(3, 16)
    a, b = [NS(text_id=f"t{i}") for i in range(3)], [NS(text_id=f"u{i}") for i in range(3)]
    assert torch.equal(noise_on_e(cfg, a, e), noise_on_e(cfg, a, e))
    assert not torch.equal(noise_on_e(cfg, a, e), noise_on_e(cfg, b, e))
    assert noise_on_e(cfg, a, torch.zeros(3, 4096)).std().item() == pytest.approx(2.0, rel=0.05)
    with pytest.raises(ValueError, match="e_noise"):
        C.from_dict(EncoderConfig, base | {"train": {"e_noise": -1.0}})
