import json

from eval import bench_tail as BT

TINY = ["model=tiny-random", "device=cpu", "threads=1", "recipe_overrides.lr=0.05",
        "mlflow=false"]


def test_tail_arm_solves_at_least_what_no_tail_solves_in_no_more_steps(tmp_path, capsys):
    """Each text's own row follows the same path in both arms, so the tail arm solves every
    text the plain arm solves, each in no more steps."""
    out = tmp_path / "bt"
    rc = BT.main(TINY + ["n_texts=6", "batch_size=4", "n_tokens=6", "cap=40",
                         "tail_restarts=2", "tail_after=[0]", f"out={out}"])
    assert rc == 0
    s = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert s["solved_after0"] >= s["solved_none"]
    # (+1: a batch of other rows may round a step differently)
    assert s["steps_median_after0"] <= s["steps_median_none"] + 1
    rep = json.loads((out / "results.json").read_text())
    plain, tail = rep["arms"]
    assert abs(rep["speedup_texts_per_hour"]
               - tail["texts_per_hour"] / plain["texts_per_hour"]) < 1e-9
    # the tail arm runs more rows per pass once no row waits
    assert tail["row_steps"] / tail["forward_passes"] >= plain["row_steps"] / plain[
        "forward_passes"]
    assert (out / "bench_tail.png").exists() and (out / "config.yaml").exists()


def test_bench_tail_bad_input_is_one_line_exit_2(capsys):
    assert BT.main(["tail_restarts=0", "mlflow=false"]) == 2
    assert BT.main(["tail_after=[-1]", "mlflow=false"]) == 2
    assert BT.main(["n_textz=3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("error:")
