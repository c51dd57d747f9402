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


def _fake_bf16_cpu(monkeypatch, tmp_path):
    """A CPU that reports avx512_bf16, so `auto` has to be decided by timing."""
    from proto import models as M
    monkeypatch.setenv("PROTOSPACE_CACHE", str(tmp_path))
    monkeypatch.delenv("PROTOSPACE_CPU_BF16", raising=False)
    monkeypatch.setattr(M, "_cpu_identity", lambda: ("Fake CPU", {"avx2", "avx512_bf16"}))
    M.cpu_precision.cache_clear()
    return M


def _busy(stop):
    a = torch.randn(384, 384)
    while not stop.is_set():
        a @ a


def test_auto_precision_is_the_same_under_load(monkeypatch, tmp_path):
    """Decided once per machine: a busy CPU (a thread doing matmuls) resolves `auto` as the
    idle run did, even when the timing would now come out the other way."""
    import threading
    M = _fake_bf16_cpu(monkeypatch, tmp_path)
    idle = M.cpu_precision()
    assert (tmp_path / "precision.json").exists() and "bf16 matmul took" in idle["reason"]
    M.cpu_precision.cache_clear()
    flipped = 0.1 if not idle["fast_bf16"] else 10.0   # what a loaded race might measure
    monkeypatch.setattr(M, "_measure_bf16_ratio", lambda *a, **k: flipped)
    stop = threading.Event()
    t = threading.Thread(target=_busy, args=(stop,), daemon=True)
    t.start()
    try:
        busy = M.cpu_precision()
        dtype = M.resolve_dtype("auto", torch.device("cpu"))
    finally:
        stop.set()
        t.join()
    assert busy["fast_bf16"] == idle["fast_bf16"] and "cached" in busy["reason"]
    assert dtype == (torch.bfloat16 if idle["fast_bf16"] else torch.float32)
    M.cpu_precision.cache_clear()


def test_a_fresh_timing_under_load_agrees_with_an_idle_one(monkeypatch, tmp_path):
    """The interleaved best-of timing itself: the same decision with and without a load."""
    import threading
    M = _fake_bf16_cpu(monkeypatch, tmp_path)
    idle = M._measure_bf16_ratio() < 0.67
    stop = threading.Event()
    t = threading.Thread(target=_busy, args=(stop,), daemon=True)
    t.start()
    try:
        busy = M._measure_bf16_ratio() < 0.67
    finally:
        stop.set()
        t.join()
    assert busy == idle
    M.cpu_precision.cache_clear()


def test_cpu_without_bf16_flags_is_fp32_without_timing(monkeypatch, tmp_path):
    from proto import models as M
    monkeypatch.setenv("PROTOSPACE_CACHE", str(tmp_path))
    monkeypatch.delenv("PROTOSPACE_CPU_BF16", raising=False)
    monkeypatch.setattr(M, "_cpu_identity", lambda: ("Old CPU", {"avx2"}))
    monkeypatch.setattr(M, "_measure_bf16_ratio", lambda *a, **k: pytest.fail("timed"))
    M.cpu_precision.cache_clear()
    assert M.cpu_precision() == {"fast_bf16": False,
                                 "reason": "no amx_bf16 or avx512_bf16 in the CPU flags"}
    monkeypatch.setenv("PROTOSPACE_CPU_BF16", "1")
    M.cpu_precision.cache_clear()
    assert M.resolve_dtype("auto", torch.device("cpu")) == torch.bfloat16
    M.cpu_precision.cache_clear()
