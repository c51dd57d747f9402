import contextlib
import threading

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


def test_a_cached_decision_holds_when_a_new_timing_would_flip(monkeypatch, tmp_path):
    """Decided once per machine: once cached, `auto` resolves as the first timing did even
    when a new timing (here a patched one) would come out the other way."""
    M = _fake_bf16_cpu(monkeypatch, tmp_path)
    first = M.cpu_precision()
    assert (tmp_path / "precision.json").exists() and "bf16 matmul took" in first["reason"]
    M.cpu_precision.cache_clear()
    flipped = 0.1 if not first["fast_bf16"] else 10.0
    monkeypatch.setattr(M, "_measure_bf16_ratio", lambda *a, **k: flipped)
    again = M.cpu_precision()
    assert again["fast_bf16"] == first["fast_bf16"] and "cached" in again["reason"]
    dtype = M.resolve_dtype("auto", torch.device("cpu"))
    assert dtype == (torch.bfloat16 if first["fast_bf16"] else torch.float32)
    M.cpu_precision.cache_clear()


def _real_bf16_flags() -> list[str]:
    from proto import models as M
    return sorted(set(M.BF16_FLAGS) & M._cpu_identity()[1])


@contextlib.contextmanager
def _loaded_cpu(threads: int = 2):
    """Threads busy with matmuls in both dtypes until the block ends (running before it
    starts)."""
    stop, started = threading.Event(), threading.Barrier(threads + 1)

    def work():
        xs = [torch.randn(384, 384).to(dt) for dt in (torch.float32, torch.bfloat16)]
        started.wait()
        while not stop.is_set():
            for x in xs:
                x @ x
    ts = [threading.Thread(target=work, daemon=True) for _ in range(threads)]
    for t in ts:
        t.start()
    started.wait()
    try:
        yield
    finally:
        stop.set()
        for t in ts:
            t.join()


@pytest.mark.skipif(not _real_bf16_flags(), reason=(
    "the CPU has no amx_bf16 or avx512_bf16 flag: `auto` is fp32 there without timing, and "
    "bf16 matmuls are ~500x slower, so a load could never flip the timing"))
def test_a_decision_timed_under_load_is_the_idle_one(monkeypatch, tmp_path):
    """The real CPU and the real timing: fresh decisions (no cache) made while two threads
    keep the cores busy with fp32 and bf16 matmuls pick the dtype that the idle machine
    picks, every time."""
    from proto import models as M
    monkeypatch.setenv("PROTOSPACE_CACHE", str(tmp_path))
    monkeypatch.delenv("PROTOSPACE_CPU_BF16", raising=False)

    def fresh() -> tuple[bool, torch.dtype]:
        (tmp_path / "precision.json").unlink(missing_ok=True)
        M.cpu_precision.cache_clear()
        d = M.cpu_precision()
        assert "bf16 matmul took" in d["reason"], d
        return d["fast_bf16"], M.resolve_dtype("auto", torch.device("cpu"))

    ratio = M._measure_bf16_ratio()
    if abs(ratio / 0.67 - 1) < 0.1:
        pytest.skip(f"this CPU's bf16/fp32 time ratio {ratio:.2f} is within 10 % of the 0.67 "
                    "threshold: the decision is close there even on an idle machine")
    idle = fresh()
    with _loaded_cpu():
        busy = [fresh() for _ in range(6)]
    M.cpu_precision.cache_clear()
    assert busy == [idle] * len(busy)


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
