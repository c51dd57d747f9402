"""encoder.encode chunk=: every chunk of every text in one encoder call and one decoding pass,
a chunked solution file that proto.decode rebuilds into the whole texts, and its refusals."""
import json
from pathlib import Path

import pytest

from encoder.encode import main as encode_main
from encoder.models import Encoder
from proto import solution
from proto.decode.__main__ import main as decode_main
from proto.onepass import OnePass

ROOT = Path(__file__).resolve().parents[2]
TEXTS = ["hello there you", "the sea"]      # 15 and 7 tokens; the encoder takes at most 8


@pytest.fixture(scope="module")
def positional(tiny_positional):
    return tiny_positional


def encode(positional, tmp_path, capsys, *args, texts=TEXTS):
    out = tmp_path / "enc.safetensors"
    argv = ["--checkpoint", str(positional), "mlflow=false", "--out", str(out), *args]
    for t in texts:
        argv += ["--text", t]
    rc = encode_main(argv)
    cap = capsys.readouterr()
    return rc, cap, out


def counting(monkeypatch, cls, name) -> list:
    calls, real = [], getattr(cls, name)

    def wrapped(self, *a, **k):
        calls.append(1)
        return real(self, *a, **k)
    monkeypatch.setattr(cls, name, wrapped)
    return calls


def test_chunks_encode_in_one_call_and_decode_whole_in_one_pass(positional, tmp_path, capsys,
                                                                monkeypatch):
    enc_calls = counting(monkeypatch, Encoder, "forward")
    passes = counting(monkeypatch, OnePass, "logits")
    rc, cap, out = encode(positional, tmp_path, capsys, "chunk=4")
    assert rc == 0 and len(enc_calls) == 1 and len(passes) == 1
    s = json.loads(cap.out.splitlines()[-1])
    assert (s["texts"], s["chunk"], s["chunks"]) == (2, 4, 6)
    assert len(cap.out.splitlines()) == 3      # a line per whole text, then the summary
    e, _, meta = solution.load(out)
    assert e.shape[0] == 6 and [t["text"] for t in meta["texts"]] == TEXTS
    assert [r["span"] for r in meta["rows"] if r["text_id"] == 0] == [[0, 4], [4, 8], [8, 12],
                                                                      [12, 15]]
    passes.clear()
    assert decode_main([str(out), "mlflow=false"]) == 0
    d = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert len(passes) == 1
    assert d["token_accuracy"] == pytest.approx(s["token_accuracy"])
    assert d["texts_exact"] == round(s["exact_match"] * 2)


def test_refined_chunks_read_back_as_reported(positional, tmp_path, capsys):
    rc, cap, out = encode(positional, tmp_path, capsys, "chunk=4", "refine_steps=20")
    assert rc == 0
    s = json.loads(cap.out.splitlines()[-1])
    assert s["token_accuracy"] > s["encoded_token_accuracy"]
    assert decode_main([str(out), "mlflow=false"]) == 0
    d = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert d["token_accuracy"] == pytest.approx(s["token_accuracy"])


def test_auto_is_the_longest_trained_length_and_zero_one_e_per_text(positional, tmp_path,
                                                                   capsys):
    rc, cap, _ = encode(positional, tmp_path, capsys, "chunk=auto")
    assert rc == 0 and json.loads(cap.out.splitlines()[-1])["chunk"] == 8
    rc, cap, out = encode(positional, tmp_path, capsys, "chunk=0", texts=["the sea"])
    assert rc == 0
    _, _, meta = solution.load(out)
    assert not solution.is_chunked(meta) and "texts" not in meta


@pytest.mark.parametrize("args,texts,says", [
    (["chunk=9"], TEXTS, "more than the encoder's maximum of 8 tokens"),
    (["chunk=0"], TEXTS, "chunk=C encodes it"),
    (["chunk=many"], TEXTS, "chunk='many'"),
    (["chunk=4"], [" "], "empty"),
])
def test_bad_chunks_are_one_line(positional, tmp_path, capsys, args, texts, says):
    rc, cap, out = encode(positional, tmp_path, capsys, *args, texts=texts)
    err = cap.err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("error:") and says in err[0]
    assert not out.exists()


def test_an_empty_texts_file_is_one_line(positional, tmp_path, capsys):
    f = tmp_path / "empty.txt"
    f.write_text("\n\n")
    rc, cap, out = encode(positional, tmp_path, capsys, "chunk=4", "--texts-file", str(f),
                          texts=[])
    err = cap.err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "holds no text" in err[0] and not out.exists()


def test_fit_init_from_starts_each_chunk_at_the_encoders_e(positional, tmp_path, capsys):
    from proto.fit.__main__ import main as fit_main
    out = tmp_path / "fit.safetensors"
    base = ["--model", "tiny-random", "--init-from", str(positional), "--text", TEXTS[0],
            "max_steps=3", "mlflow=false", "--out", str(out)]
    assert fit_main(base + ["--chunk", "4"]) == 0
    s = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert s["chunks"] == 4 and s["start"].startswith("encoder")
    assert len(solution.load(out)[2]["rows"]) == 4
    out.unlink()
    # a chunk longer than the encoder's positions cannot start at its e
    assert fit_main(base + ["--chunk", "12"]) == 2
    err = [x for x in capsys.readouterr().err.splitlines() if x.startswith("error:")]
    assert len(err) == 1 and "8 positions" in err[0] and not out.exists()


def test_evaluate_chunked_scores_what_encode_decodes(positional, tmp_path, capsys):
    """encoder.evaluate chunk=4 scores texts longer than the encoder's 8 positions as encode
    chunk=4 does (per text, all chunks), its curve runs over chunks, and chunk=0 refuses
    them with the way out in the message."""
    from encoder.evaluate import main as evaluate_main
    f = tmp_path / "texts.txt"
    f.write_text("\n".join(TEXTS) + "\n")
    base = ["--checkpoint", str(positional), "texts=file", "--texts_file", str(f),
            "mlflow=false", f"out={tmp_path / 'ev'}"]
    assert evaluate_main(base + ["chunk=4", "curve=true", "curve_texts=2",
                                 "curve_steps=[0,2]"]) == 0
    ev = json.loads(capsys.readouterr().out.splitlines()[-1])
    rc, cap, _ = encode(positional, tmp_path, capsys, "chunk=4")
    enc = json.loads(cap.out.splitlines()[-1])
    assert rc == 0 and ev["eval/one_pass_acc"] == pytest.approx(enc["accuracy_mean"], abs=1e-4)
    assert ev["eval/chunk"] == 4
    assert ev["curve"]["encoder"]["0"][0] == pytest.approx(enc["token_accuracy"], abs=1e-4)
    assert evaluate_main(base) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error:") and "chunk=C encodes it" in err[-1]


def test_a_text_past_the_decoders_context_encodes_in_chunks(positional, tmp_path, capsys):
    """chunk=auto (the default): a text longer than the decoder's context is one e per chunk
    and decodes back whole; chunk=0 refuses it and says how it would fit."""
    long = "x" * 600
    rc, cap, out = encode(positional, tmp_path, capsys, texts=[long])
    s = json.loads(cap.out.splitlines()[-1])
    assert rc == 0 and s["chunk"] == 8 and s["chunks"] >= 600 // 8 // 2
    assert decode_main([str(out), "mlflow=false"]) == 0
    d = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert d["texts"] == 1 and d["token_accuracy"] == pytest.approx(s["token_accuracy"])
    out.unlink()
    rc, cap, out = encode(positional, tmp_path, capsys, "chunk=0", texts=[long])
    assert rc == 2 and "chunk=C encodes it" in cap.err and not out.exists()
