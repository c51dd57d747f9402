import json

import pytest

from eval.capacity import capacity, main, sqrt2_grid

TINY = ["model=tiny-random", "device=cpu", "threads=1", "recipe_overrides.lr=0.05",
        "mlflow=false"]


def test_grid_is_the_papers():
    assert sqrt2_grid(4, 1448) == [4, 5, 8, 11, 16, 22, 32, 45, 64, 90, 128, 181, 256, 362,
                                   512, 724, 1024, 1448]
    assert sqrt2_grid(8, 32) == [8, 11, 16, 22, 32]


@pytest.mark.parametrize("acc,cap", [
    ({4: 1.0, 5: 1.0, 8: 0.98, 11: 0.99, 16: 0.5}, 11),  # largest >= 0.99, past a failure
    ({4: 1.0, 5: 1.0, 8: 1.0}, 8),
    ({4: 0.5, 5: 0.2}, 0),
    ({}, 0),
    ({100: 99 / 100}, 100),                               # exactly 0.99 counts
    ({8: 1.0, 100: 0.9899}, 8),
])
def test_capacity_rule(acc, cap):
    assert capacity(acc, 0.99) == cap


def test_table3_on_tiny_model(tmp_path, capsys):
    out = tmp_path / "cap"
    rc = main(TINY + ["min_length=4", "max_length=11", "n_texts=2", "max_steps=60",
                      f"out={out}"])
    captured = capsys.readouterr()
    assert rc == 0
    s = json.loads(captured.out.strip().splitlines()[-1])
    assert s["grid"] == [4, 5, 8, 11]
    assert set(s["results"]) == {f"{src}/{m}" for src in ("britannica", "random-words")
                                 for m in ("not_shared", "shared")}
    rep = json.loads((out / "results.json").read_text())
    for t in rep["per_text"]:
        acc = {int(n): a for n, a in t["accuracy_by_length"].items()}
        assert t["capacity"] == capacity(acc, 0.99)
        assert t["capacity"] in (0, 4, 5, 8, 11)
        if t["capacity"]:
            assert t["c_tokens"] >= 0.99 * t["capacity"] and t["h_lm"] > 0
        if t["mode"] == "not_shared":
            # patience 1: a text stops climbing at its first failed length
            fails = [n for n in sorted(acc) if acc[n] < 0.99]
            assert not fails or max(acc) == fails[0]
    # one m shared by ALL texts: every text is fitted at the same lengths
    shared = [t for t in rep["per_text"] if t["mode"] == "shared"]
    assert len({tuple(t["accuracy_by_length"]) for t in shared}) == 1
    md = (out / "table.md").read_text()
    assert "| britannica | not_shared | 2 |" in md and "| random-words | shared (unit) | 2 |" in md
    assert "128 / 388.4 ± 66.4" in md   # paper Pythia-160M PG-19, not shared
    assert (out / "capacity.png").exists()


def test_frozen_warm_m_mode(tmp_path, capsys):
    rc = main(TINY + ["shared_m=warm", "modes=[shared]", "sources=[random-words]",
                      "warm_texts=2", "warm_length=6", "warm_steps=30", "min_length=4",
                      "max_length=5", "n_texts=2", "max_steps=40", f"out={tmp_path / 'w'}"])
    assert rc == 0
    rep = json.loads((tmp_path / "w" / "results.json").read_text())
    assert rep["warm"]["texts"] == 2 and rep["shared_m"] == "warm"
    assert "shared (warm)" in (tmp_path / "w" / "table.md").read_text()


def test_restarts_keep_each_texts_best_seed(tmp_path, capsys):
    """Seed 0 runs the same path with and without extra seeds (rows and groups are
    independent), so with restarts=2 no text fits worse at any length, in either mode."""
    common = TINY + ["min_length=4", "max_length=8", "n_texts=2", "max_steps=25", "patience=0"]
    acc = {}
    for k in (1, 2):
        out = tmp_path / f"r{k}"
        assert main(common + [f"restarts={k}", f"out={out}"]) == 0
        rep = json.loads((out / "results.json").read_text())
        acc[k] = {(t["source"], t["text"], t["mode"]): t["accuracy_by_length"]
                  for t in rep["per_text"]}
        assert f"best of {k} seed" in (out / "table.md").read_text()
    capsys.readouterr()
    assert acc[1].keys() == acc[2].keys()
    for key, by_n in acc[1].items():
        assert all(acc[2][key][n] >= a for n, a in by_n.items()), key
    assert main(TINY + ["restarts=0", f"out={tmp_path / 'never'}"]) == 2


def test_a_stopped_climb_resumes_from_partial_json(tmp_path, capsys):
    """partial.json after each fit; the same command again refits nothing and reports the
    same table; another config starts over."""
    out = tmp_path / "cap"
    args = TINY + ["min_length=4", "max_length=5", "n_texts=1", "max_steps=20", f"out={out}"]
    assert main(args) == 0
    first = json.loads((out / "results.json").read_text())
    state = json.loads((out / "partial.json").read_text())["state"]
    assert len(state["done"]) == len(first["calls"]) > 0
    capsys.readouterr()
    assert main(args + ["threads=2"]) == 0          # threads do not change what a fit gives
    err = capsys.readouterr().err
    assert f"resuming from {out / 'partial.json'}: {len(state['done'])} fits done" in err
    assert "fitted (acc" not in err                   # nothing refitted
    again = json.loads((out / "results.json").read_text())
    assert again["per_text"] == first["per_text"] and again["calls"] == first["calls"]
    assert main(args + ["max_steps=21"]) == 0
    assert "starting over" in capsys.readouterr().err


@pytest.mark.parametrize("arg,msg", [("shared_m=joint", "shared_m"), ("bogus=1", "unknown key"),
                                     ("max_length=2", "min_length"),
                                     ("max_length=1448", "context")])
def test_bad_input_is_one_error_line_exit_2(arg, msg, tmp_path, capsys):
    rc = main(TINY + ["min_length=1000" if arg == "max_length=1448" else "n_texts=1", arg,
                      f"out={tmp_path / 'never'}"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("error:") and msg in err and len(err.splitlines()) == 1
    assert not (tmp_path / "never").exists()
