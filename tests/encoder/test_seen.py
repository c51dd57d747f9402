"""The texts an encoder trained on, drawn again from its checkpoint, and encoder.evaluate's
frequency buckets counted over them: a stream-trained encoder has no corpus to count."""
import json
from collections import Counter

import pytest

from .conftest import ROOT

TINY_POSITIONAL = ROOT / "configs" / "encoder" / "tiny-positional.yaml"


@pytest.fixture(scope="module")
def stream_trained(tmp_path_factory, tiny):
    """(run dir, {text id: tokens} of every text its training steps drew) of the tiny
    positional recipe, which trains on the stream alone."""
    from encoder.config import EncoderConfig
    from encoder.data import Split
    from encoder.train import Trainer
    from proto import config as C
    out = tmp_path_factory.mktemp("seen") / "run"
    cfg = C.load(EncoderConfig, TINY_POSITIONAL, [f"out={out}", "mlflow=false"])
    drawn, real = {}, Split.micro_batch

    def recording(self, *a, **k):
        xs = real(self, *a, **k)
        drawn.update({x.text_id: x.token_ids for x in xs})
        return xs
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Split, "micro_batch", recording)
        Trainer(cfg, lm=tiny, log=lambda s: None).run()
    return out, drawn


def _counts(texts) -> Counter:
    return Counter(t for toks in texts for t in toks)


def test_counts_are_over_the_texts_training_drew(stream_trained, tiny):
    from encoder import checkpoint as ckpt
    from encoder.seen import training_counts
    out, drawn = stream_trained
    blob = ckpt.read(str(out))
    counts, info = training_counts(blob, tiny)
    assert counts == _counts(drawn.values()) and info["texts"] == len(drawn)
    assert info["runs"][0]["positions"] == 20 and not info["estimated"] and not info["note"]
    # a bounded replay samples every k-th position and scales its counts by k
    sampled, info = training_counts(blob, tiny, limit=7)
    assert info["estimated"] and info["runs"][0]["stride"] == 3
    assert sampled and all(c % 3 == 0 for c in sampled.values())


def test_a_run_started_from_another_counts_that_ones_texts_too(stream_trained, tiny, tmp_path):
    from encoder import checkpoint as ckpt
    from encoder.seen import replay, training_counts
    out, drawn = stream_trained
    parent = ckpt.read(str(out))
    config = json.loads(json.dumps(parent["config"]))
    config["data"]["seed"] = 1
    child = dict(parent, path=str(tmp_path / "child.pt"), config={**config, "init_from": str(out)})
    own, _, _ = replay(child, tiny)
    assert set(own) != set(drawn)
    counts, info = training_counts(child, tiny)
    assert [r["checkpoint"] for r in info["runs"]] == [child["path"], parent["path"]]
    assert counts == _counts({**drawn, **own}.values())
    lost = dict(child, config={**config, "init_from": str(tmp_path / "gone")})
    counts, info = training_counts(lost, tiny)
    assert counts == _counts(own.values()) and "gone cannot be read" in info["note"]


def test_training_texts_that_cannot_be_drawn_again_leave_the_buckets_out(stream_trained, tiny):
    from encoder import checkpoint as ckpt
    from encoder import positions as P
    from encoder.seen import training_counts
    blob = ckpt.read(str(stream_trained[0]))
    config = json.loads(json.dumps(blob["config"]))
    config["data"]["corpus"] = "/nonexistent/corpus"
    counts, info = training_counts(dict(blob, config=config), tiny)
    assert counts is None and "cannot be drawn again" in info["omitted"]
    where = P.breakdown([[True, False]], [[5, 6]], None)
    assert "by_frequency" not in where
    assert len(P.plot({"encoder": where}).axes) == 1


def test_evaluate_buckets_a_stream_trained_encoder_by_its_stream(stream_trained, tmp_path,
                                                                 capsys):
    from encoder.evaluate import main
    out, drawn = stream_trained
    assert main(["--checkpoint", str(out), "mlflow=false", f"out={tmp_path}", "limit=8"]) == 0
    rep = json.loads((tmp_path / "results.json").read_text())
    assert rep["frequency_counts"]["texts"] == len(drawn)
    freq = rep["positions"]["encoder"]["by_frequency"]
    seen = sum(b["tokens"] for k, b in freq.items() if k != "unseen")
    assert seen > 0, freq   # an empty count puts every token in "unseen"
    assert "note:" not in capsys.readouterr().err
