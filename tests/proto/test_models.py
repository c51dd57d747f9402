import pytest
import torch

from proto.models import ModelLoadError, load_model


def test_tiny_model_is_frozen_and_identified(tiny):
    assert not any(p.requires_grad for p in tiny.model.parameters())
    assert not tiny.model.training
    again = load_model("tiny-random", device="cpu")
    assert again.identity == tiny.identity and len(tiny.weights_sha256) == 64
    ids = tiny.tokenize("héllo")
    assert tiny.detokenize(ids) == "héllo"


def test_missing_local_model_is_a_clear_error(tmp_path):
    with pytest.raises(ModelLoadError, match="GGUF file not found"):
        load_model(str(tmp_path / "x.gguf"))
    with pytest.raises(ModelLoadError, match="dtype"):
        load_model("tiny-random", dtype="fp8")


def test_local_directory_model_roundtrip(tiny, tmp_path):
    tiny.model.save_pretrained(tmp_path)
    tiny.tokenizer.save_pretrained(tmp_path)
    lm = load_model(str(tmp_path), device="cpu", dtype="fp32")
    x = torch.tensor([[1, 2, 3]])
    assert torch.allclose(lm.model(input_ids=x).logits, tiny.model(input_ids=x).logits,
                          atol=1e-5)
