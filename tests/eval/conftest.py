"""Corpora for the eval.locality and eval.connectivity tests.

`corpus`: a tiny corpus built once per test session with the in-process test model (same-text
restarts, same-context generated texts and different contexts all present, and the build's
connectivity pairs). `fake_corpus`: a function writing a corpus directory directly (no model).
"""
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "configs" / "data_gen" / "tiny.yaml"
# 3 contexts x 3 generated continuations + 3 random-word texts; half the texts get 2 restarts
GEN_SOURCES = ("sources=[{name: generated, context_source: britannica, count: 3, lengths: [6], "
               "continuations: 3}, {name: random-words, count: 3, lengths: [6]}]")


@pytest.fixture(scope="session")
def corpus(tmp_path_factory, tiny) -> Path:
    from data_gen import build as B
    from proto import config as C
    out = tmp_path_factory.getbasetemp() / "eval-tiny-corpus"
    cfg = C.load(B.BuildConfig, TINY, [f"out={out}", "threads=1", "mlflow=false", GEN_SOURCES,
                                       "restart_fraction=0.5", "warm_texts=4", "warm_steps=50"])
    s = B.build(cfg, lm=tiny)
    assert s["status"] == "complete"
    return out


def _fake_corpus(path: Path, rows: list[dict], status: str = "complete", d: int = 4) -> Path:
    """A corpus directory written directly (no model): one shard of `rows`, no pairs."""
    import pyarrow as pa

    from data_gen import corpus as K
    full = [{"source": "x", "restart": 0, "text": "t", "token_ids": [1, 2], "n_tokens": 2,
             "e": [1.0] + [0.0] * (d - 1), "accuracy": 1.0, "c_tokens": 2, "h_lm": 0.0,
             "loss": 0.0, "steps": 1, "seconds": 0.0, "solved": True, "status": "solved",
             **r} for r in rows]
    tab = pa.Table.from_pylist(full, schema=K.shard_schema(d))
    path.mkdir(parents=True)
    side = K.write_shard(path, K.SHARDS, 0, tab)
    pside = K.write_shard(path, K.PAIRS, 0, pa.Table.from_pylist([], schema=K.PAIR_SCHEMA))
    (path / "manifest.json").write_text(json.dumps({
        "format": K.FORMAT, "status": status, "model": {"name": "none"}, "d_model": d,
        "arrangement": {"name": "e_m", "prefix": []}, "config": {},
        "shards": [side], "pairs": [pside]}))
    return path


@pytest.fixture
def fake_corpus():
    """fake_corpus(path, rows, status="complete", d=4) -> path (see _fake_corpus)."""
    return _fake_corpus
