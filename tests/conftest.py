import os
import sys

import pytest

# Tests never write to the user's MLflow store or model cache.
os.environ.setdefault("PROTOSPACE_NO_MLFLOW", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# One PATH for every process of the suite, the venv's bin first: torch's extension builder
# runs the first ninja on PATH, and a build made with another ninja is rebuilt (a minute or
# two each time DeepSpeed's CPU comm extension is rebuilt for a launcher test).
_BIN = os.path.dirname(sys.executable)
if os.environ.get("PATH", "").split(os.pathsep)[0] != _BIN:
    os.environ["PATH"] = _BIN + os.pathsep + os.environ.get("PATH", "")


@pytest.fixture(scope="session")
def tiny():
    from proto.models import load_model
    return load_model("tiny-random", device="cpu")


@pytest.fixture(scope="session")
def tiny_positional(tmp_path_factory):
    """The tiny positional encoder recipe (8 positions, lengths 6 and 8), trained 2 steps:
    one checkpoint directory for every test that reads (never writes) one."""
    from pathlib import Path

    from encoder.config import EncoderConfig
    from encoder.train import Trainer
    from proto import config as C
    d = tmp_path_factory.mktemp("tiny-positional")
    cfg = C.load(EncoderConfig, Path(__file__).resolve().parents[1]
                 / "configs/encoder/tiny-positional.yaml",
                 [f"out={d}", "mlflow=false", "threads=1", "train.steps=2",
                  "train.eval_every=2", "train.save_every=2"])
    Trainer(cfg, log=lambda s: None).run()
    return d


@pytest.fixture(scope="session")
def smollm2():
    from proto.models import ModelLoadError, load_model
    try:
        return load_model("smollm2-135m", device="cpu")
    except ModelLoadError as exc:  # the wheel is part of `make setup`; say so loudly if absent
        pytest.fail(f"default model unavailable: {exc}")
