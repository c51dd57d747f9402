import json

import pytest

from eval.arrangements import TABLE1, main

TINY = ["model=tiny-random", "device=cpu", "threads=1", "recipe_overrides.lr=0.05",
        "mlflow=false"]


def _last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


def test_table1_on_tiny_model(tmp_path, capsys):
    out = tmp_path / "arr"
    rc = main(TINY + ["lengths=[1,4]", "n_texts=2", "max_steps=60", f"out={out}"])
    captured = capsys.readouterr()
    assert rc == 0
    s = _last_json(captured.out)
    # one cell per (arrangement, N), in the JSON and in results.json
    assert set(s["accuracy_mean"]) == set(TABLE1)
    assert all(set(v) == {"1", "4"} for v in s["accuracy_mean"].values())
    rep = json.loads((out / "results.json").read_text())
    cells = {(c["arrangement"], c["n"]): c for c in rep["cells"]}
    assert set(cells) == {(a, n) for a in TABLE1 for n in (1, 4)}
    for c in cells.values():
        assert len(c["accuracies"]) == 2 and 0 <= c["accuracy_mean"] <= 1
        assert c["solved_frac"] == sum(a == 1.0 for a in c["accuracies"]) / 2
        assert max(c["steps"]) <= 60
    # N = 1 is one proto-token's output: every arrangement solves it at once
    assert all(cells[(a, 1)]["solved_frac"] == 1.0 for a in TABLE1)
    # the paper's numbers sit beside ours where paper.txt has them
    assert cells[("eN", 4)]["paper"] == "0.17 ± 0.18"
    assert cells[("e_m", 1)]["paper"] == ""
    md = (out / "table.md").read_text()
    assert "| eN | [e]xN | 4 |" in md and "| e_m | [e][m]x(N-1) | 1 |" in md
    assert md.count("\n| ") == 1 + 2 * len(TABLE1)  # header + one row per cell
    assert (out / "arrangements.png").stat().st_size > 0
    assert "N=4" in captured.err  # progress on stderr, not stdout


@pytest.mark.parametrize("arg,msg", [("arrangements=[e_m,nope]", "unknown arrangement"),
                                     ("bogus=1", "unknown key"),
                                     ("recipe=nope", "unknown recipe"),
                                     ("lengths=[0]", "positive")])
def test_bad_input_is_one_error_line_exit_2(arg, msg, tmp_path, capsys):
    rc = main(TINY + [arg, f"out={tmp_path / 'never'}"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("error:") and msg in err and len(err.splitlines()) == 1
    assert not (tmp_path / "never").exists()
