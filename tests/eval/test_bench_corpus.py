import json

import pyarrow.parquet as pq

from eval import bench_corpus as BC

TINY = ["build_config=configs/data_gen/tiny.yaml", "threads=1", "mlflow=false",
        "build.pairs_per_chunk=0", "build.restarts=1", "build.restart_fraction=0.0"]


def _text_ids(corpus):
    return sorted(t for p in sorted((corpus / "shards").glob("*.parquet"))
                  for t in pq.read_table(p, columns=["text_id"]).column("text_id").to_pylist())


def test_arms_build_the_same_texts_and_report_the_ratio(tmp_path, capsys):
    out = tmp_path / "bc"
    rc = BC.main(TINY + [f"out={out}", "build.recipe_overrides.max_steps=150",
                         "arms=[{name: plain}, {name: tail, tail_restarts: 2, tail_after: 0}]"])
    assert rc == 0
    s = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    rep = json.loads((out / "results.json").read_text())
    plain, tail = rep["arms"]
    assert _text_ids(out / "corpora" / "plain") == _text_ids(out / "corpora" / "tail")
    assert plain["texts"] == tail["texts"] == 10
    # a text's own row follows the same path in both arms; backups can only add solutions
    assert tail["solved"] >= plain["solved"]
    assert abs(tail["speedup_texts_per_hour"]
               - tail["texts_per_hour"] / plain["texts_per_hour"]) < 1e-9
    assert s["tail/solved"] == tail["solved"] and plain["speedup_texts_per_hour"] == 1.0
    # a text's result is its first solved row, which has run no more steps than its own row
    assert tail["steps_total"] <= plain["steps_total"]
    assert tail["speedup_steps"] == plain["steps_total"] / tail["steps_total"]
    assert (out / "bench_corpus.png").exists() and (out / "table.md").exists()


def test_a_rerun_builds_fresh_rather_than_resuming(tmp_path, capsys):
    out = tmp_path / "bc"
    args = TINY + [f"out={out}", "build.recipe_overrides.max_steps=5",
                   "arms=[{name: a}, {name: b}]"]
    assert BC.main(args) == 0
    assert BC.main(args) == 0
    rep = json.loads((out / "results.json").read_text())
    # a resumed build would skip its chunks and report no texts fitted in ~0 s
    assert all(a["texts"] == 10 and a["chunk_seconds"] > 0 for a in rep["arms"])


def test_bad_arms_are_one_line_exit_2_before_anything_runs(tmp_path, capsys):
    out = tmp_path / "bc"
    for arms in ("[{name: a}]", "[{name: a}, {name: a}]", "[{name: a}, {tail_restarts: 1}]",
                 "[{name: a}, {name: b, tail_restartz: 1}]", "[{name: a}, {name: b, out: x}]",
                 "[{name: a}, {name: b, seed: 3}]", "[{name: a}, {name: b, dtype: bf16}]"):
        assert BC.main(TINY + [f"out={out}", f"arms={arms}"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error:"), err
    assert not out.exists()
