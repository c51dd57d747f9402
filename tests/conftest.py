import os

import pytest

# Tests never write to the user's MLflow store or model cache.
os.environ.setdefault("PROTOSPACE_NO_MLFLOW", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny():
    from proto.models import load_model
    return load_model("tiny-random", device="cpu")


@pytest.fixture(scope="session")
def smollm2():
    from proto.models import ModelLoadError, load_model
    try:
        return load_model("smollm2-135m", device="cpu")
    except ModelLoadError as exc:  # the wheel is part of `make setup`; say so loudly if absent
        pytest.fail(f"default model unavailable: {exc}")
