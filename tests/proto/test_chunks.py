"""Solution files with several e per text: a chunked fit writes one row per chunk, and
proto.decode rebuilds the whole texts from ONE batched forward pass over all chunks."""
import json

import pytest

from proto import solution
from proto.decode.__main__ import main as decode_main
from proto.fit.__main__ import main as fit_main
from proto.onepass import OnePass

TEXTS = ["hello there", "the sea"]


def summary(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def chunked(tmp_path_factory):
    out = tmp_path_factory.mktemp("chunks") / "c.safetensors"
    argv = ["--model", "tiny-random", "--chunk", "4", "max_steps=300", "mlflow=false",
            "--out", str(out)]
    for t in TEXTS:
        argv += ["--text", t]
    assert fit_main(argv) == 0
    return out


def count_forward(monkeypatch) -> list:
    calls = []
    real = OnePass.logits

    def logits(self, e, *a, **k):
        calls.append(e.shape[0])
        return real(self, e, *a, **k)
    monkeypatch.setattr(OnePass, "logits", logits)
    return calls


def test_chunked_fit_writes_one_row_per_chunk(chunked, capsys):
    e, _, meta = solution.load(chunked)
    assert solution.is_chunked(meta) and [t["text"] for t in meta["texts"]] == TEXTS
    # 11 and 7 tokens in chunks of 4: 3 + 2 rows, spans tiling each text
    assert [(r["text_id"], r["chunk"], r["span"]) for r in meta["rows"]] == [
        (0, 0, [0, 4]), (0, 1, [4, 8]), (0, 2, [8, 11]), (1, 0, [0, 4]), (1, 1, [4, 7])]
    assert e.shape[0] == 5


def test_decode_rebuilds_whole_texts_in_one_forward_pass(chunked, capsys, monkeypatch):
    capsys.readouterr()
    calls = count_forward(monkeypatch)
    assert decode_main([str(chunked), "mlflow=false"]) == 0
    out = capsys.readouterr().out
    s = summary(out)
    assert calls == [5]                     # every chunk of every text, one forward pass
    assert s["texts"] == 2 and len(s["results"]) == 5 and len(s["text_results"]) == 2
    _, _, meta = solution.load(chunked)
    solved = [all(meta["rows"][i]["status"] == "ok" for i in ix)
              for ix in solution.text_rows(meta)]
    assert any(solved)
    lines = out.splitlines()[:-1]
    for t, ok, res in zip(TEXTS, solved, s["text_results"]):
        assert res["exact"] == ok           # a text is exact exactly when all its chunks are
        if ok:
            assert t in lines
    assert s["texts_exact"] == sum(solved)


def test_single_e_files_still_decode(tmp_path, capsys):
    out = tmp_path / "one.safetensors"
    assert fit_main(["--model", "tiny-random", "--text", "hello", "max_steps=300",
                     "mlflow=false", "--out", str(out)]) == 0
    capsys.readouterr()
    assert decode_main([str(out), "mlflow=false"]) == 0
    text = capsys.readouterr().out
    s = summary(text)
    assert s["rows"] == 1 and "texts" not in s and "text_id" not in s["results"][0]
    assert text.splitlines()[0] == "hello" and s["exact"] == 1


def test_fit_chunk_fits_a_text_longer_than_the_context(tmp_path, capsys):
    long = "ab " * 180                      # 540 tokens; tiny-random's context is 512
    out = tmp_path / "long.safetensors"
    base = ["--model", "tiny-random", "--text", long, "max_steps=3", "mlflow=false",
            "--out", str(out)]
    assert fit_main(base) == 2
    # the learned-start warning before it is tests/test_bad_inputs.py's known xfail
    err = [x for x in capsys.readouterr().err.splitlines() if x.startswith("error:")]
    assert len(err) == 1 and "--chunk" in err[0]
    assert not out.exists()
    assert fit_main(base + ["--chunk", "64"]) == 0
    s = summary(capsys.readouterr().out)
    assert s["texts"] == 1 and s["chunks"] == 9
    _, _, meta = solution.load(out)
    assert [t for r in meta["rows"] for t in r["token_ids"]] == meta["texts"][0]["token_ids"]


def test_chunks_that_do_not_tile_their_text_are_refused(chunked, tmp_path):
    e, m, meta = solution.load(chunked)
    meta["rows"][1]["token_ids"] = meta["rows"][1]["token_ids"][:-1]
    bad = solution.save(tmp_path / "bad.safetensors", e, m, {
        k: v for k, v in meta.items() if k != "format"})
    with pytest.raises(solution.SolutionError, match="do not tile"):
        solution.load(bad)


def test_a_span_whose_width_is_not_its_rows_is_refused(chunked, tmp_path):
    # the tokens still tile the text; only the last span claims a token past its end
    e, m, meta = solution.load(chunked)
    a, b = meta["rows"][-1]["span"]
    meta["rows"][-1]["span"] = [a, b + 1]
    bad = solution.save(tmp_path / "bad.safetensors", e, m, {
        k: v for k, v in meta.items() if k != "format"})
    with pytest.raises(solution.SolutionError, match="do not tile"):
        solution.load(bad)


def test_spans_tile():
    assert solution.spans_tile([(0, 4), (4, 8), (8, 11)], [4, 4, 3], 11)
    assert not solution.spans_tile([(0, 4), (4, 8)], [4, 4], 11)        # stops short
    assert not solution.spans_tile([(0, 4), (5, 8)], [4, 3], 8)         # a gap
    assert not solution.spans_tile([(0, 4), (4, 8)], [4, 3], 8)         # width != row
    assert not solution.spans_tile([], [], 0)


def test_chunk_spans():
    assert solution.chunk_spans(11, 4) == [(0, 4), (4, 8), (8, 11)]
    assert solution.chunk_spans(8, 4) == [(0, 4), (4, 8)]
    assert solution.chunk_spans(5, 0) == [(0, 5)]


def test_a_chunked_fit_keeps_the_best_restart_of_each_chunk(tmp_path, capsys):
    out = tmp_path / "r.safetensors"
    assert fit_main(["--model", "tiny-random", "--text", "hi you", "--chunk", "3",
                     "--restarts", "2", "max_steps=5", "mlflow=false", "--out", str(out)]) == 0
    s = summary(capsys.readouterr().out)
    assert (s["rows"], s["chunks"]) == (4, 2)
    e, _, meta = solution.load(out)
    assert e.shape[0] == 2 and [r["chunk"] for r in meta["rows"]] == [0, 1]
