"""A tiny corpus (in-process test model) and a helper that trains a tiny encoder on it."""
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TINY_CORPUS = ROOT / "configs" / "data_gen" / "tiny.yaml"
TINY_ENCODER = ROOT / "configs" / "encoder" / "tiny.yaml"


@pytest.fixture(scope="session")
def enc_corpus(tmp_path_factory, tiny) -> Path:
    from data_gen import build as B
    from proto import config as C
    out = tmp_path_factory.getbasetemp() / "encoder-tiny-corpus"
    cfg = C.load(B.BuildConfig, TINY_CORPUS, [
        f"out={out}", "threads=1", "mlflow=false", "m_init=random", "pairs_per_chunk=0",
        "sources=[{name: random-words, count: 12, lengths: [6]}, "
        "{name: britannica, count: 8, lengths: [6]}]", "chunk_size=20", "batch_size=24"])
    assert B.build(cfg, lm=tiny)["status"] == "complete"
    return out


def encoder_config(out, corpus, *overrides):
    from encoder.config import EncoderConfig
    from proto import config as C
    return C.load(EncoderConfig, TINY_ENCODER,
                  [f"out={out}", f"data.corpus={corpus}", "mlflow=false", "threads=1",
                   *overrides])


@pytest.fixture
def train_tiny(tmp_path, enc_corpus):
    """train_tiny(*overrides, out=None) -> (summary, Trainer); a fresh tiny model each call,
    since LoRA adapters are injected into the model they read."""
    from encoder.train import Trainer
    from proto.models import load_model

    def run(*overrides, out=None):
        cfg = encoder_config(out or tmp_path / "run", enc_corpus, *overrides)
        t = Trainer(cfg, lm=load_model("tiny-random", device="cpu"), log=lambda s: None)
        return t.run(), t
    return run
