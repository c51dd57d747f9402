"""eval.bench_encoder on the tiny model: the bare loop and encoder.train's step side by side,
the train step's breakdown, and the FLOP / memory numbers it kept."""
import json

import pytest

from eval import bench_encoder as BE

from .conftest import ROOT

TINY = ROOT / "configs" / "encoder" / "tiny.yaml"
PHASES = [f"phase_{k}_s" for k in (*BE.PHASES, "other")]


def _bench(capsys, config, *extra):
    rc = BE.main([f"encoder_config={config}", "n_tokens=6", "micro_batch=4", "reps=3",
                  "threads=1", "mlflow=false", *extra])
    out = capsys.readouterr().out
    assert rc == 0
    return json.loads(out.strip().splitlines()[-1])


def _check(r):
    for k in ("bare_texts_per_s", "train_texts_per_s", "train_over_bare", "step_seconds",
              "train_step_seconds", "phased_step_seconds", "data_prepare_s", "step_gflop",
              "flop_utilisation", "peak_memory_gib", *PHASES[:-1]):
        assert r[k] > 0, k
    assert r["phase_other_s"] >= 0
    assert r["examples_per_s"] == r["bare_texts_per_s"]
    assert r["train_over_bare"] == pytest.approx(r["train_texts_per_s"] / r["bare_texts_per_s"],
                                                 rel=0.02)
    # the phases are the step: what falls outside them is a sliver of it
    step = r["phased_step_seconds"]
    assert sum(r[k] for k in PHASES) == pytest.approx(step, rel=0.01)
    assert sum(r[k] for k in PHASES[:-1]) == pytest.approx(step, rel=0.2)
    # the timed steps and the phased ones are the same steps, up to the synchronising edges
    # and a CPU shared with other work
    assert 0.33 < step / r["train_step_seconds"] < 3
    assert r["decoder_weight_grads"] == 0 and r["trainable_params"] > 0


def test_corpus_config_side_by_side(capsys, tmp_path, corpus):
    """tiny.yaml on a built corpus: the train loop reads it (m: corpus)."""
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(TINY.read_text().replace("outputs/corpus/tiny", str(corpus)))
    r = _bench(capsys, cfg)
    _check(r)
    assert r["data"] == f"corpus {corpus}" and r["encoder_kind"] == "lora"
    assert r["prefetch"] == 2 and r["micro_batch"] == 4 and r["n_tokens"] == 6


def _gpu_yaml_on_the_tiny_model(path):
    """configs/encoder/gpu.yaml (ZeRO-2, bf16 engine, the text stream) shrunk to the tiny
    model, as its own header runs it on a CPU."""
    text = (ROOT / "configs" / "encoder" / "gpu.yaml").read_text()
    for a, b in (("llm: smollm2-135m", "llm: tiny-random"), ("m: start", "m: learned"),
                 ("positions: 20", "positions: 8"), ("eval_texts: 1024", "eval_texts: 4"),
                 ("tokens: 0.5}", "tokens: 0.5, prose_sources: [plays]}")):
        assert a in text
        text = text.replace(a, b)
    path.write_text(text)
    return path


def test_zero2_stream_config_without_prefetch_waits_for_its_batches(capsys, tmp_path):
    """The bare loop stays off the ZeRO-2 engine's gradient hooks; the train loop draws from
    the text stream, and with prefetch=0 makes each batch itself, so its data wait is about
    what a batch costs to make."""
    r = _bench(capsys, _gpu_yaml_on_the_tiny_model(tmp_path / "gpu.yaml"), "prefetch=0")
    _check(r)
    assert r["prefetch"] == 0 and "stream" in r["data"] and r["encoder_kind"] == "positional"
    assert r["phase_data_wait_s"] >= 0.5 * r["data_prepare_s"]


def test_an_unbuilt_corpus_is_left_out_and_said(capsys, tmp_path):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(TINY.read_text().replace("outputs/corpus/tiny", str(tmp_path / "none")))
    r = _bench(capsys, cfg)
    assert r["data"] == f"raw text (corpus {tmp_path / 'none'} is not built), m: learned"
    assert r["train_texts_per_s"] > 0


def test_bad_input_is_one_line_exit_2(capsys):
    assert BE.main(["prefetch=-2", "mlflow=false"]) == 2
    assert BE.main([f"encoder_config={TINY}", "n_tokens=600", "mlflow=false"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("error:") and err[-1].startswith("error: a text of 600 tokens")
