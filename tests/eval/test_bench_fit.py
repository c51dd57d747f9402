import json

from eval import bench_fit as BF


def test_bench_fit_machinery_on_tiny_model(capsys):
    rc = BF.main(["model=tiny-random", "device=cpu", "n_texts=3", "batch_size=2", "n_tokens=4",
                  "cap=60", "paper_texts=2", "profile_batch=2", "scaling_batches=[1,2]",
                  "mlflow=false"])
    assert rc == 0
    out = capsys.readouterr().out
    r = json.loads(out.strip().splitlines()[-1])
    for k in ("speedup_batched_vs_loop", "speedup_default_vs_paper_steps", "flop_utilisation"):
        assert r[k] > 0
    # the ratios are the ones the raw numbers give
    assert abs(r["speedup_batched_vs_loop"]
               - r["batched_texts_per_hour"] / r["loop_texts_per_hour"]) < 1e-6 * r[
        "speedup_batched_vs_loop"]
    assert abs(r["flop_utilisation"] - r["step_gflops_per_s"] / r["matmul_gflops_per_s"]) < 1e-6
    assert r["paper_steps_median"] / r["default_steps_median"] == r[
        "speedup_default_vs_paper_steps"]
    assert r["n_texts"] == 3 and r["batch_size"] == 2 and r["paper_texts"] == 2
    assert r["default_solved"] == 2  # counted over the paper's texts, the ones compared
    per_row = r["row_step_seconds_by_batch"]
    assert set(per_row) == {"1", "2"} and min(per_row.values()) > 0
    best = min(per_row, key=per_row.get)
    assert r["batching_ceiling_batch"] == int(best)
    assert abs(r["batching_ceiling"] - per_row["1"] / per_row[best]) < 1e-9
    # the utilisation row describes the full batch of profile_batch rows the scaling block timed
    assert abs(r["step_seconds"] - 2 * per_row["2"]) < 1e-9
    assert "top operators of a profiled step:" in out and "aten::" in out


def test_bench_fit_bad_input_is_one_line_exit_2(capsys):
    assert BF.main(["model=no-such-model", "mlflow=false"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:")
    assert BF.main(["n_textz=3"]) == 2
    assert BF.main(["batch_size=-1", "mlflow=false"]) == 2
    assert BF.main(["scaling_batches=[0,4]", "mlflow=false"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(e.startswith("error:") for e in err)


def test_step_flops_is_forward_plus_input_backward(tiny):
    fwd = BF.forward_flops(tiny, 2, 4, 6)
    step = BF.step_flops(tiny, 2, 4, 6)
    assert fwd > 0 and 2 * fwd < step < 3 * fwd  # backward ~ forward, attention twice
    assert BF.forward_flops(tiny, 4, 4, 6) == 2 * fwd  # linear in the batch
