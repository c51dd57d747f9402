"""Every encoder YAML and DeepSpeed JSON is valid as shipped."""
import json
from pathlib import Path

import pytest

from encoder.config import EncoderConfig
from proto import config as C

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("path", sorted((ROOT / "configs" / "encoder").glob("*.yaml")),
                         ids=lambda p: p.name)
def test_encoder_yaml_parses_and_names_a_deepspeed_json(path):
    cfg = C.load(EncoderConfig, path)
    ds = json.loads((ROOT / cfg.train.deepspeed).read_text())
    assert "auto" not in json.dumps(ds)
    assert cfg.train.global_batch % cfg.train.micro_batch == 0


def test_unknown_keys_are_rejected():
    with pytest.raises(C.ConfigError, match="unknown key"):
        C.load(EncoderConfig, None, ["model.depth=3"])
    with pytest.raises(C.ConfigError, match="needs data.corpus"):
        C.load(EncoderConfig, None, ["data.raw=[{name: random-words}]", "loss.kind=regress"])


@pytest.mark.parametrize("override,why", [("loss.focal_gamma=-1", "focal_gamma"),
                                          ("loss.nearest_steps=0", "nearest_steps"),
                                          ("loss.nearest_lr=0", "nearest_lr")])
def test_bad_loss_values_are_refused(override, why):
    with pytest.raises(C.ConfigError, match=why):
        C.load(EncoderConfig, None, ["data.raw=[{name: random-words}]", "m=start", override])
