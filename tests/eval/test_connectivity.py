"""eval.connectivity on the tiny corpus (conftest.py, shared with test_locality): the build's
pairs/, pairs computed here with per-t profiles in the corpus's own model, and bad input.
"""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from data_gen import corpus as K
from eval import connectivity as CN
from proto import config as C

ROOT = Path(__file__).resolve().parents[2]


def _run(capsys, *argv):
    rc = CN.main([*argv, "threads=1", "mlflow=false"])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def test_stored_pairs_summary_matches_the_corpus(corpus, tmp_path, capsys):
    out = tmp_path / "c"
    rc, stdout, err = _run(capsys, "--corpus", str(corpus), f"out={out}")
    assert rc == 0, err
    s = json.loads(stdout.strip().splitlines()[-1])
    pairs = K.read_table(corpus, K.PAIRS).to_pylist()
    assert len(pairs) >= 1 and s["pairs"] == s["pairs_stored"] == len(pairs)
    assert s["pairs_computed"] == 0
    for key, col in (("linear_min_acc_mean", "linear_min_acc"),
                     ("bezier_min_acc_mean", "bezier_min_acc"),
                     ("length_ratio_mean", "length_ratio")):
        assert s[key] == pytest.approx(np.mean([p[col] for p in pairs]))
    assert s["linear_solved_path_frac"] == np.mean([p["linear_min_acc"] >= 1 - 1e-6
                                                    for p in pairs])
    assert 0 <= s["bezier_solved_path_frac"] <= 1 and s["seconds"] >= 0
    lin_ok = [p["linear_min_acc"] >= 1 - 1e-6 for p in pairs]
    bez_ok = [p["bezier_min_acc"] >= 1 - 1e-6 for p in pairs]
    assert (s["linear_solved"], s["bezier_solved"]) == (sum(lin_ok), sum(bez_ok))
    assert s["bezier_solved_where_linear_fails"] == sum(b and not a
                                                      for a, b in zip(lin_ok, bez_ok))
    assert s["length_ratio_median"] == pytest.approx(np.median([p["length_ratio"]
                                                                for p in pairs]))
    for f in ("results.json", "table.md", "min_accuracy.png"):
        assert (out / f).stat().st_size > 0
    assert not (out / "profile.png").exists()                   # no profiles without compute
    assert "only 1.2" in stdout and "| pairs whose path stays solved" in stdout


def test_compute_one_pair_in_the_corpus_model(corpus, tmp_path, capsys):
    out = tmp_path / "c"
    rc, stdout, err = _run(capsys, "--corpus", str(corpus), f"out={out}", "compute=1")
    assert rc == 0, err
    s = json.loads(stdout.strip().splitlines()[-1])
    assert s["pairs_computed"] == 1
    res = json.loads((out / "results.json").read_text())
    p = res["computed_pairs"][0]
    man = K.read_manifest(corpus)
    assert len(p["t"]) == len(p["linear_acc"]) == len(p["bezier_acc"]) == \
        man["config"]["path_grid"]
    # both ends are solved restarts, so the path starts and ends at accuracy 1
    assert p["linear_acc"][0] == p["linear_acc"][-1] == 1.0
    assert p["bezier_acc"][0] == p["bezier_acc"][-1] == 1.0
    assert p["linear_min_acc"] == min(p["linear_acc"]) and p["length_ratio"] >= 1.0
    assert res["path_settings"]["bezier_steps"] == man["config"]["bezier_steps"]
    # the linear path is deterministic: a re-measured stored pair gives the stored numbers
    stored = {(r["text_id"], r["restart_a"], r["restart_b"]): r
              for r in K.read_table(corpus, K.PAIRS).to_pylist()}
    key = (p["text_id"], p["restart_a"], p["restart_b"])
    if key in stored:
        assert p["in_pairs"]
        assert p["linear_min_acc"] == pytest.approx(stored[key]["linear_min_acc"])
        assert s["pairs"] == len(stored)                          # counted once
    else:
        assert s["pairs"] == len(stored) + 1
    assert (out / "profile.png").stat().st_size > 0
    # the control point's training: its loss curve, steps taken and why it stopped
    h = p["bezier_history"]
    assert h[0]["step"] == 0 and h[-1]["step"] == p["bezier_steps_run"]
    assert p["bezier_stop"] in ("solved", "converged", "cap")
    assert (p["bezier_stop"] == "solved") == (p["bezier_min_acc"] == 1.0)
    assert (out / "control_loss.png").stat().st_size > 0


def test_a_different_model_is_refused(corpus, tmp_path, capsys):
    c = tmp_path / "other"
    shutil.copytree(corpus, c)
    man = json.loads((c / "manifest.json").read_text())
    man["model"]["weights_sha256"] = "0" * 64
    (c / "manifest.json").write_text(json.dumps(man))
    rc, out, err = _run(capsys, "--corpus", str(c), f"out={tmp_path / 'o'}", "compute=1")
    assert rc == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "not solutions for it" in err


def test_no_pairs_is_reported_not_fatal(tmp_path, capsys, fake_corpus):
    c = fake_corpus(tmp_path / "c", [{"text_id": "a", "context_id": "x"}])
    rc, out, err = _run(capsys, "--corpus", str(c), f"out={tmp_path / 'o'}")
    assert rc == 0, err
    s = json.loads(out.strip().splitlines()[-1])
    assert s["pairs"] == 0 and s["linear_min_acc_mean"] is None
    assert s["bezier_solved_path_frac"] is None
    assert "n/a: the corpus has no connectivity pairs" in out


@pytest.mark.parametrize("case", ["missing", "not_corpus", "partial", "no_solved"])
def test_bad_input_is_one_error_line_and_exit_2(case, tmp_path, capsys, fake_corpus):
    if case == "missing":
        path = tmp_path / "nope"
    elif case == "not_corpus":
        path = tmp_path / "empty"
        path.mkdir()
    elif case == "partial":
        path = fake_corpus(tmp_path / "p", [{"text_id": "a", "context_id": "x"}],
                           status="partial")
    else:
        path = fake_corpus(tmp_path / "u", [{"text_id": "a", "context_id": "x",
                                             "solved": False}])
    rc, out, err = _run(capsys, "--corpus", str(path), f"out={tmp_path / 'o'}")
    assert rc == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert not (tmp_path / "o").exists()


def test_connectivity_yaml_parses():
    cfg = C.load(CN.ConnectivityConfig, ROOT / "configs" / "eval" / "connectivity.yaml")
    assert cfg.compute == 0 and cfg.bezier_steps is None
