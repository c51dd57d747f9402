"""encode -> proto.decode round trip, evaluate, refinement from the encoder, checkpoint checks."""
import json
import re

import pytest
import torch

from .conftest import encoder_config


@pytest.fixture(scope="module")
def trained(tmp_path_factory, enc_corpus):
    from encoder.train import Trainer
    from proto.models import load_model
    out = tmp_path_factory.mktemp("enc") / "run"
    cfg = encoder_config(out, enc_corpus)
    Trainer(cfg, lm=load_model("tiny-random", device="cpu"), log=lambda s: None).run()
    return out


def _last_json(capsys):
    cap = capsys.readouterr()
    return json.loads(cap.out.strip().splitlines()[-1]), cap.err


def test_encode_marks_each_run_of_wrong_tokens():
    from encoder.encode import marked

    class Letters:
        def detokenize(self, ids):
            return "".join("abcdefghij"[i] for i in ids)
    assert marked(Letters(), [1, 2, 9, 9, 5], [1, 2, 3, 4, 5]) == "bc[jj→de]f"
    assert marked(Letters(), [0, 1], [0, 1]) == "ab"


def test_encode_then_decode_round_trip(trained, tmp_path, capsys):
    from encoder.encode import main as encode
    from proto.decode.__main__ import main as decode_main
    sol = tmp_path / "enc.safetensors"
    rc = encode(["--checkpoint", str(trained), "--text", "cat on a mat",
                 "--text", "a much longer text than any trained", "--out", str(sol),
                 "mlflow=false", "chunk=0"])   # one e per text, at a length it never saw
    assert rc == 0
    cap = capsys.readouterr()
    s, err = json.loads(cap.out.strip().splitlines()[-1]), cap.err
    lines = cap.out.strip().splitlines()[-3:-1]
    # each text as it decodes; with the wrong runs read as the wanted tokens, the text itself
    wanted = [re.sub(r"\[[^→\]]*→([^\]]*)\]", r"\1", ln.split("  ", 1)[1]) for ln in lines]
    assert wanted == ["cat on a mat", "a much longer text than any trained"]
    assert s["texts"] == 2 and 0 <= s["accuracy_mean"] <= 1
    assert s["untrained_lengths"] and "not in the encoder's training lengths" in err
    assert decode_main([str(sol), "mlflow=false"]) == 0
    d, _ = _last_json(capsys)
    from proto import solution
    _, _, meta = solution.load(sol)
    assert meta["encoded"]["kind"] == "lora" and meta["rows"][0]["status"] == "encoded"
    assert [r["accuracy"] for r in d["results"]] == pytest.approx(
        [r["accuracy"] for r in meta["rows"]])


def test_evaluate_reports_encoder_and_baselines(trained, capsys, tmp_path):
    from encoder.evaluate import main
    out = tmp_path / "ev"
    assert main(["--checkpoint", str(trained), "mlflow=false", f"out={out}"]) == 0
    printed = capsys.readouterr().out
    s = json.loads(printed.strip().splitlines()[-1])
    # the table names each baseline as the README does, with its metric name beside it
    for name in ("| kNN over TF-IDF (knn) |", "| e0, the encoder's offset (start) |",
                 "| random e (random) |"):
        assert name in printed
    for k in ("eval/one_pass_acc", "eval/exact_match", "eval/c_tokens", "eval/knn_acc",
              "eval/mean_acc", "eval/start_acc", "eval/random_acc"):
        assert k in s
    assert s["eval/optimised_acc"] == 1.0 and s["texts"] > 0
    # where it fails: per-position accuracies average to the method's accuracy (equal
    # lengths), and the frequency buckets hold every scored token once
    rep = json.loads((out / "results.json").read_text())
    for method in ("encoder", "knn"):
        where = rep["positions"][method]
        (n, acc), = where["by_position"].items()
        assert len(acc) == int(n)
        assert sum(acc) / len(acc) == pytest.approx(rep["methods"][method]["all"]["acc"])
        assert sum(b["tokens"] for b in where["by_frequency"].values()) == s["texts"] * int(n)
    assert (out / "positions.png").exists() and (out / "config.yaml").exists()
    # lengths: the corpus's length named explicitly scores the same texts; a bad one is refused
    assert main(["--checkpoint", str(trained), "mlflow=false", "lengths=[6]",
                 f"out={out}"]) == 0
    assert _last_json(capsys)[0]["texts"] == s["texts"]
    assert main(["--checkpoint", str(trained), "mlflow=false", "lengths=[0]"]) == 2
    assert "lengths must be >= 1" in capsys.readouterr().err


def test_checkpoint_for_other_weights_is_refused(trained, tmp_path, capsys):
    from encoder.encode import main as encode
    blob = torch.load(trained / "encoder.pt", weights_only=True)
    blob["llm"]["weights_sha256"] = "f" * 64
    bad = tmp_path / "bad.pt"
    torch.save(blob, bad)
    out = tmp_path / "o.safetensors"
    assert encode(["--checkpoint", str(bad), "--text", "hi", "--out", str(out),
                   "mlflow=false"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error:") and "belongs to decoder" in err[-1]
    assert not out.exists()
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    assert encode(["--checkpoint", str(tmp_path / "junk.pt"), "--text", "hi", "--out",
                   str(out), "mlflow=false"]) == 2
    assert "cannot read encoder checkpoint" in capsys.readouterr().err


def test_refinement_starts_at_the_encoders_e(trained, tmp_path, capsys, enc_corpus):
    """proto.fit --init-from: rows start at the encoder's e with its m frozen; data_gen.build
    init_from: a corpus with the encoder's m is built from the encoder's starts."""
    from encoder.refine import encoded_starts
    from proto import solution
    from proto.fit.__main__ import main as fit_main
    from proto.models import load_model
    lm = load_model("tiny-random", device="cpu")
    e_enc, m_enc, _ = encoded_starts(str(trained), lm, [lm.tokenize("cat on a mat")])
    out = tmp_path / "refined.safetensors"
    rc = fit_main(["--model", "tiny-random", "--text", "cat on a mat", "--init-from",
                   str(trained), "--out", str(out), "max_steps=1", "mlflow=false",
                   "init_overrides.lr=0.000001"])
    assert rc == 0
    start = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["start"]
    assert start.startswith("encoder ") and str(trained) in start and " step " in start
    e, m, meta = solution.load(out)
    assert torch.allclose(m[0], m_enc)            # m frozen at the encoder's m
    assert torch.allclose(e[0], e_enc[0], atol=1e-3)  # one tiny step from the encoder's e
    from data_gen import build as B
    from proto import config as C
    man = json.loads((enc_corpus / "manifest.json").read_text())
    # the corpus fixture's own config (so the same m), plus init_from
    cfg = C.from_dict(B.BuildConfig, {**man["config"], "out": str(tmp_path / "c"),
                                      "init_from": str(trained), "mlflow": False,
                                      "threads": 1})
    s = B.build(cfg, lm=lm)
    assert s["status"] == "complete" and s["texts"] == man["config"]["sources"][0]["count"] + \
        man["config"]["sources"][1]["count"]


def test_bench_corpus_builds_the_same_texts_from_the_encoders_e(trained, tmp_path, capsys,
                                                                enc_corpus):
    """eval.bench_corpus: an arm with init_from starts every e at the encoder's prediction and
    builds the same texts as the arm from the corpus's own start."""
    import yaml

    from eval import bench_corpus as BC
    man = json.loads((enc_corpus / "manifest.json").read_text())
    base = tmp_path / "build.yaml"
    base.write_text(yaml.safe_dump(man["config"]))   # the corpus fixture's config: the same m
    out = tmp_path / "bc"
    rc = BC.main([f"build_config={base}", f"out={out}", "threads=1", "mlflow=false",
                  f"arms=[{{name: start}}, {{name: encoder, init_from: '{trained}'}}]"])
    assert rc == 0
    s, err = _last_json(capsys)
    assert "starts: encoder" in err            # the encoder arm really started from the encoder
    rep = json.loads((out / "results.json").read_text())
    start, enc = rep["arms"]
    assert start["texts"] == enc["texts"] == man["counts"]["texts"]
    assert enc["changes"] == {"init_from": str(trained)}
    assert s["encoder/speedup_texts_per_hour"] == round(enc["speedup_texts_per_hour"], 3)


def test_evaluate_refines_from_the_start_and_from_the_encoder(trained, capsys, tmp_path):
    """refine=true fits held-out texts from the start and from the encoder's e, side by side,
    with the corpus's recipe capped at refine_max_steps."""
    from encoder.evaluate import main
    assert main(["--checkpoint", str(trained), "mlflow=false", f"out={tmp_path / 'ev'}",
                 "refine=true", "refine_texts=2", "refine_max_steps=7"]) == 0
    s, _ = _last_json(capsys)
    assert len(s["refine"]) == 2
    for arm in s["refine"].values():
        assert arm["texts"] == 2 and 0 <= arm["solved"] <= 2
        # each row runs at most the cap: the corpus recipe's own cap (300) is replaced
        assert arm["row_steps"] <= 2 * 7


def test_curriculum_encoder_trains_and_evaluates_at_any_lengths(tmp_path, enc_corpus, capsys):
    from encoder.evaluate import main
    from encoder.train import Trainer
    from proto.models import load_model
    out = tmp_path / "cur"
    cfg = encoder_config(out, enc_corpus, "data.lengths=[4,6]", "data.curriculum=[0,3]")
    s = Trainer(cfg, lm=load_model("tiny-random", device="cpu"), log=lambda s: None).run()
    assert s["finished"] and s["steps"] == cfg.train.steps
    assert main(["--checkpoint", str(out), "mlflow=false", "lengths=[4]",
                 f"out={tmp_path / 'ev'}"]) == 0
    assert _last_json(capsys)[0]["texts"] > 0


def test_evaluate_all_texts_of_a_corpus_skips_what_the_encoder_trained_on(trained, capsys,
                                                                           tmp_path, enc_corpus):
    import shutil

    from data_gen.corpus import load_m, save_m
    from encoder.evaluate import main
    assert main(["--checkpoint", str(trained), "mlflow=false", f"out={tmp_path / 'a'}"]) == 0
    held, _ = _last_json(capsys)
    # the training corpus itself, scored "all": only its held-out texts are left
    assert main(["--checkpoint", str(trained), "mlflow=false", f"out={tmp_path / 'b'}",
                 "--corpus", str(enc_corpus), "texts=all"]) == 0
    every, _ = _last_json(capsys)
    assert every["texts"] == held["texts"] and every["eval/knn_acc"] == held["eval/knn_acc"]
    other = tmp_path / "other-m"
    shutil.copytree(enc_corpus, other)
    m, meta = load_m(other)
    save_m(other, m * 2, meta)
    assert main(["--checkpoint", str(trained), "mlflow=false", "--corpus", str(other),
                 "texts=all", f"out={tmp_path / 'c'}"]) == 2
    assert "another m" in capsys.readouterr().err
    assert main(["--checkpoint", str(trained), "mlflow=false", "texts=all"]) == 2
    assert "give corpus=DIR" in capsys.readouterr().err


def test_encode_refines_k_steps_and_decode_reads_the_result(trained, tmp_path, capsys):
    """refine_steps=K: each e takes at most K decode-loss steps from the encoder's e; the
    file holds the refined e's, and proto.decode reads the accuracy it reports."""
    from encoder.encode import main as encode
    from proto import solution
    from proto.decode.__main__ import main as decode_main
    sol = tmp_path / "ref.safetensors"
    texts = ["cat on a mat", "a dog", "blue sky"]
    args = ["--checkpoint", str(trained), "--out", str(sol), "mlflow=false"]
    for t in texts:
        args += ["--text", t]
    assert encode(args + ["refine_steps=15", "refine_lr=0.05"]) == 0
    s, _ = _last_json(capsys)
    assert s["refine_steps"] == 15 and s["accuracy_mean"] >= s["encoded_accuracy_mean"] - 0.2
    _, _, meta = solution.load(sol)
    assert all(0 < r["steps"] <= 15 and r["status"] == "refined" for r in meta["rows"])
    assert decode_main([str(sol), "mlflow=false"]) == 0
    d, _ = _last_json(capsys)
    # chunk=auto splits the texts longer than the encoder's training length: the file is
    # chunked and proto.decode reports its whole texts beside its rows
    assert d["text_accuracy_mean"] == pytest.approx(s["accuracy_mean"])
    assert d["token_accuracy"] == pytest.approx(s["token_accuracy"])


def test_encode_bad_inputs_are_one_line_and_write_nothing(trained, tmp_path, capsys):
    from encoder.encode import main as encode
    out = tmp_path / "x.safetensors"
    base = ["--checkpoint", str(trained), "--out", str(out), "mlflow=false"]
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    cases = [(["--texts-file", str(empty)], "holds no text"),
             (["--text", "hi", "refine_steps=-1"], "refine_steps must be >= 0"),
             (["--text", "hi", "nope=1"], "unknown key"),
             (["--text", "x" * 600, "chunk=0"], "more than the decoder's context")]
    for extra, msg in cases:
        assert encode(base + extra) == 2, extra
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith("error:") and msg in err[-1], err
    assert not out.exists()


def test_an_fp32_trained_encoder_decodes_in_fp32_by_default(trained, monkeypatch, tmp_path,
                                                           capsys):
    """The decoder runs in the precision the encoder was trained in, even where `auto` would
    pick bf16; dtype= overrides it and says so."""
    from encoder import checkpoint as ckpt
    from proto import models as M
    assert ckpt.read(str(trained))["precision"] == "float32"
    monkeypatch.setenv("PROTOSPACE_CPU_BF16", "1")
    M.cpu_precision.cache_clear()
    try:
        assert M.resolve_dtype("auto", torch.device("cpu")) == torch.bfloat16
        _, dec, _, _ = ckpt.load(str(trained), device="cpu")
        assert dec.lm.dtype == torch.float32
        _, dec, _, _ = ckpt.load(str(trained), device="cpu", dtype="bf16")
        assert dec.lm.dtype == torch.bfloat16
        err = capsys.readouterr().err
        assert "dtype=bfloat16 as asked" in err and "made in float32" in err
    finally:
        M.cpu_precision.cache_clear()


def test_missing_inputs_name_the_command_that_makes_them(tmp_path, capsys):
    from encoder.encode import main as encode
    from encoder.evaluate import main as evaluate
    from proto.decode.__main__ import main as decode_main
    assert evaluate(["--checkpoint", "outputs/encoder/tiny-nowhere", "mlflow=false"]) == 2
    assert "train one with python -m encoder.train" in capsys.readouterr().err
    assert encode(["--checkpoint", str(tmp_path / "none"), "--text", "hi", "--out",
                   str(tmp_path / "o.safetensors"), "mlflow=false"]) == 2
    assert "python -m encoder.train --config" in capsys.readouterr().err
    assert decode_main([str(tmp_path / "none.safetensors"), "mlflow=false"]) == 2
    assert "python -m proto.fit" in capsys.readouterr().err


def test_evaluate_curve_and_stream_and_file_texts(trained, capsys, tmp_path):
    """curve=true: accuracy and exact after K steps from the encoder's e and from e0; K = 0
    is the one-pass accuracy itself. texts=file scores the lines of a file."""
    from encoder.evaluate import main
    f = tmp_path / "s.txt"
    f.write_text("the cat sat\nblue sky\n")
    assert main(["--checkpoint", str(trained), "mlflow=false", f"out={tmp_path / 'ev'}",
                 "texts=file", "--texts-file", str(f), "curve=true", "curve_texts=2",
                 "curve_steps=[0,1,3]"]) == 0
    s, _ = _last_json(capsys)
    assert s["texts"] == 2 and set(s["curve"]) == {"encoder", "start"}
    assert set(s["curve"]["encoder"]) == {"0", "1", "3"}
    assert s["curve"]["encoder"]["0"][0] == pytest.approx(s["eval/one_pass_acc"], abs=1e-6)
    assert main(["--checkpoint", str(trained), "mlflow=false", f"out={tmp_path / 'ev2'}",
                 "texts=stream", "limit=3", "stream_kinds=[tokens,words]"]) == 0
    s, _ = _last_json(capsys)
    assert s["texts"] == 3 * 2   # 3 texts of each kind at the encoder's one length


def test_a_checkpoint_missing_a_trained_weight_is_refused(trained, tmp_path, capsys):
    from encoder.encode import main as encode
    blob = torch.load(trained / "encoder.pt", weights_only=True)
    dropped = sorted(k for k in blob["state"] if k not in ("offset", "m"))[0]
    del blob["state"][dropped]
    bad = tmp_path / "lacks.pt"
    torch.save(blob, bad)
    assert encode(["--checkpoint", str(bad), "--text", "hi", "--out",
                   str(tmp_path / "o.safetensors"), "mlflow=false"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error:") and "lacks trained weights" in err and dropped in err


def test_init_from_starts_a_run_at_a_trained_encoders_weights(trained, tmp_path, enc_corpus):
    from encoder import checkpoint as ckpt
    from encoder.train import Trainer
    from proto.models import load_model
    cfg = encoder_config(tmp_path / "ft", enc_corpus, f"init_from={trained}",
                         "train.steps=1", "train.lr=1e-12", "train.head_lr=1e-12")
    Trainer(cfg, lm=load_model("tiny-random", device="cpu"), log=lambda s: None).run()
    a = ckpt.read(str(trained))["state"]
    b = ckpt.read(str(tmp_path / "ft"))["state"]
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    with pytest.raises(Exception, match="another model config"):
        bad = encoder_config(tmp_path / "ft2", enc_corpus, f"init_from={trained}",
                             "model.lora_rank=2")
        Trainer(bad, lm=load_model("tiny-random", device="cpu"), log=lambda s: None).run()
