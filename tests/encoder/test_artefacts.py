"""Encoder files are self-contained, and every path that reads one gets the same e's."""
import json
from pathlib import Path

import pytest
import torch

from encoder import checkpoint as ckpt
from encoder.core import EncoderError
from encoder.encode import main as encode_main
from encoder.models import STATS
from proto import config as C, solution
from proto import models as M
from proto.providers import start_record, text_starts

ROOT = Path(__file__).resolve().parents[2]
TEXTS = ["hi you", "abc def", "the sea"]   # within the tiny encoder's 8 positions


@pytest.fixture(scope="module")
def positional(tmp_path_factory):
    """{dtype: encoder dir} of the tiny positional recipe, trained 2 steps in each precision."""
    from encoder.config import EncoderConfig
    from encoder.train import Trainer
    out = {}
    for dt in ("float32", "bfloat16"):
        d = tmp_path_factory.mktemp(f"pos-{dt}")
        cfg = C.load(EncoderConfig, ROOT / "configs/encoder/tiny-positional.yaml",
                     [f"out={d}", f"dtype={dt}", "mlflow=false", "threads=1", "train.steps=2",
                      "train.eval_every=2", "train.save_every=2"])
        Trainer(cfg, log=lambda s: None).run()
        out[dt] = d
    return out


def test_the_table_statistics_travel_with_the_file(positional):
    blob = ckpt.read(str(positional["float32"]))
    assert set(STATS) <= set(blob["state"])
    # loaded beside a decoder held in another precision, the saved statistics are used
    enc, *_ = ckpt.load(str(positional["float32"]), dtype="bf16")
    assert torch.equal(enc.body.w_root.cpu(), blob["state"]["body.w_root"])
    assert torch.equal(enc.body.w_scale.cpu(), blob["state"]["body.w_scale"])


@pytest.mark.parametrize("flag", ["0", "1"])
@pytest.mark.parametrize("trained", ["float32", "bfloat16"])
def test_fit_init_from_and_encode_start_from_the_same_e(positional, trained, flag, monkeypatch,
                                                        tmp_path, capsys):
    monkeypatch.setenv("PROTOSPACE_CPU_BF16", flag)
    M.cpu_precision.cache_clear()
    spec, out, summary = str(positional[trained]), tmp_path / "enc.safetensors", tmp_path / "s"
    argv = ["--checkpoint", spec, "--out", str(out), "--summary", str(summary), "mlflow=false"]
    assert encode_main(argv + [a for t in TEXTS for a in ("--text", t)]) == 0
    e_encode, _, meta = solution.load(str(out))                # what encoder.encode wrote
    assert json.loads(summary.read_text()) == json.loads(capsys.readouterr().out.splitlines()[-1])
    lm = M.load_model("tiny-random", device="cpu", dtype="auto", **start_record(spec))
    toks = [lm.tokenize(t) for t in TEXTS]
    e_fit, _, _ = text_starts(spec, lm, toks)                  # proto.fit --init-from's path
    M.cpu_precision.cache_clear()
    assert lm.dtype == getattr(torch, trained) and meta["precision"] == trained
    assert torch.equal(e_encode, e_fit)


def test_default_is_the_encoder_shipped_for_the_model():
    assert ckpt.resolve("default") == ckpt.SHIPPED / "smollm2-135m.pt"
    assert ckpt.resolve("smollm2-135m-pos20") == ckpt.SHIPPED / "smollm2-135m-pos20.pt"
    assert ckpt.resolve("smollm2-135m-chunk6") == ckpt.SHIPPED / "smollm2-135m-chunk6.pt"
    with pytest.raises(EncoderError, match="no default encoder is shipped for model"):
        ckpt.resolve("default", model="gemma3-270m")


@pytest.mark.parametrize("pt", sorted(ckpt.SHIPPED.glob("*.pt")), ids=lambda p: p.stem)
def test_every_shipped_encoder_has_a_model_card_naming_its_bytes(pt):
    """A card that names another file's sha256 describes weights that are not these."""
    import hashlib
    card = pt.with_suffix(".md")
    assert card.is_file(), f"{pt.name} ships without a model card"
    text = card.read_text()
    assert f"`{pt.relative_to(ROOT)}`" in text.splitlines()[0]
    assert hashlib.sha256(pt.read_bytes()).hexdigest() in text
    assert "command" in text and "held-out" in text
