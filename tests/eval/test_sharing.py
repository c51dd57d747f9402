import json
import random

from eval.sharing import aggregate, main

TINY = ["model=tiny-random", "device=cpu", "threads=1", "recipe_overrides.lr=0.05",
        "mlflow=false"]


def test_aggregate_is_the_papers_max_and_avg():
    acc = [[1.0, 0.5], [0.5, 0.5]]            # acc[seed][text]
    a = aggregate(acc)
    assert a["max_mean"] == 0.75 and a["avg_mean"] == 0.625
    rng = random.Random(0)
    for _ in range(50):
        acc = [[rng.random() for _ in range(5)] for _ in range(3)]
        a = aggregate(acc)
        assert a["max_mean"] >= a["avg_mean"]


def test_table2_on_tiny_model(tmp_path, capsys):
    out = tmp_path / "sh"
    rc = main(TINY + ["n_tokens=5", "n_texts=4", "group_sizes=[1,2]", "seeds=2",
                      "max_steps=60", f"out={out}"])
    captured = capsys.readouterr()
    assert rc == 0
    s = json.loads(captured.out.strip().splitlines()[-1])
    assert [(r["shared"], r["group_size"]) for r in s["rows"]] == [
        ("m", 1), ("m", 2), ("e", 1), ("e", 2)]
    rep = json.loads((out / "results.json").read_text())
    st = {(x["shared"], x["group_size"]): x for x in rep["settings"]}
    for x in st.values():
        assert x["max_mean"] >= x["avg_mean"] - 1e-12
        assert len(x["accuracy"]) == 2 and all(len(r) == 4 for r in x["accuracy"])
    # S_g = 1 shares nothing: the same fit reported for both schemes, with each paper row
    assert st[("m", 1)]["accuracy"] == st[("e", 1)]["accuracy"]
    assert st[("m", 1)]["paper"]["avg"] == [0.98, 0.07]
    assert st[("e", 1)]["paper"]["avg"] == [0.98, 0.08]
    md = (out / "table.md").read_text()
    assert "| m | 2 | max |" in md and "| e | 1 | avg |" in md
    assert (out / "sharing.png").exists()


def test_group_that_straddles_seeds_is_rejected(tmp_path, capsys):
    rc = main(TINY + ["n_texts=4", "group_sizes=[3]", f"out={tmp_path / 'never'}"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("error:") and "divide" in err
    assert len(err.splitlines()) == 1 and not (tmp_path / "never").exists()
