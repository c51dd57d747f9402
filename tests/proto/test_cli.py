import json

import pytest

from proto.decode.__main__ import main as decode_main
from proto.fit.__main__ import main as fit_main


def _last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


def test_fit_then_decode_prints_the_text_back(tmp_path, capsys):
    sol = tmp_path / "sol.safetensors"
    rc = fit_main(["--model", "tiny-random", "--text", "hello world", "--out", str(sol),
                   "lr=0.05", "max_steps=400"])
    out = capsys.readouterr().out
    assert rc == 0
    s = _last_json(out)
    assert {"texts", "solved", "accuracy_mean", "steps_median", "seconds", "model"} <= set(s)
    assert s["solved"] == 1 and s["model"] == "tiny-random"
    assert s["start"].startswith("origin")   # no learned start is shipped for the tiny model
    assert decode_main([str(sol)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "hello world"
    assert _last_json(out)["exact"] == 1


@pytest.mark.parametrize("args,msg", [
    (["--text", ""], "empty"),
    (["--text", "x" * 600], "context"),
    (["--text", "a", "bogus=1"], "unknown key"),
    (["--text", "a", "--recipe", "nope"], "unknown recipe"),
    (["--texts-file", "/nonexistent/file.txt"], "cannot read"),
])
def test_fit_bad_input_is_one_line_and_exit_2(args, msg, capsys, tmp_path):
    out = tmp_path / "never.safetensors"
    rc = fit_main(["--model", "tiny-random", "--out", str(out)] + args)
    err = capsys.readouterr().err.strip()
    assert rc == 2 and msg in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_fit_rejects_non_utf8_texts_file(tmp_path, capsys):
    f = tmp_path / "t.txt"
    f.write_bytes(b"ok line\n\xff\xfe bad\n")
    assert fit_main(["--model", "tiny-random", "--texts-file", str(f)]) == 2
    assert "not UTF-8" in capsys.readouterr().err


def test_unknown_model_offline_is_one_line(monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert fit_main(["--model", "no-such-org/no-such-model-xyz", "--text", "a"]) == 2
    assert "unknown model" in capsys.readouterr().err


def test_decode_missing_or_corrupt_file(tmp_path, capsys):
    assert decode_main([str(tmp_path / "none.safetensors")]) == 2
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 40)
    assert decode_main([str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(e.startswith("error:") for e in err)
