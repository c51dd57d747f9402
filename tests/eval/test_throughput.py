from eval.throughput import ThroughputConfig, measure


def test_throughput_machinery_on_tiny_model():
    cfg = ThroughputConfig(model="tiny-random", device="cpu", lengths=[4, 8], reps=2,
                           fit_texts=1, fit_length=5, mlflow=False)
    r = measure(cfg, log=lambda *_: None)
    assert [row["n_tokens"] for row in r["rows"]] == [4, 8]
    for row in r["rows"]:
        assert row["one_pass_s"] > 0 and row["ar_s"] > 0
        assert abs(row["ratio"] - row["ar_s"] / row["one_pass_s"]) < 1e-9
        # the bound: at full matmul speed the one-pass time would shrink by its utilisation
        assert row["one_pass_gflop"] > 0 and 0 < row["one_pass_utilisation"]
        assert abs(row["ratio_at_matmul_peak"] * row["one_pass_utilisation"]
                   - row["ratio"]) < 1e-6 * row["ratio"]
        # the ratio if the forward took only its GEMMs' time
        assert 0 < row["one_pass_gemm_only_s"] and row["ratio_at_gemm_only"] > 0
        assert abs(row["ratio_at_gemm_only"] * row["one_pass_gemm_only_s"]
                   - row["ar_s"]) < 1e-6 * row["ar_s"]
        # both sides at their limits: AR step time shrinks by its share of the memory bound
        assert 0 < row["ar_memory_utilisation"]
        assert abs(row["ratio_at_hardware_limits"] - row["ratio_at_matmul_peak"]
                   * row["ar_memory_utilisation"]) < 1e-6 * row["ratio_at_hardware_limits"]
    assert r["memory_read_gb_per_s"] > 0
    # 8 tokens need more forward FLOPs than 4
    assert r["rows"][1]["one_pass_gflop"] > r["rows"][0]["one_pass_gflop"]
    assert r["n_tokens"] == 8 and r["ratio"] == r["rows"][-1]["ratio"]
    # the fitted text really decodes in one pass, so the timing is of a working solution
    assert r["fit_solved"] == 1 and r["fit_decode_accuracy"] == [1.0]


def test_throughput_command_prints_table_and_json_and_rejects_bad_input(capsys):
    import json

    from eval.throughput import main
    assert main(["model=tiny-random", "device=cpu", "lengths=[4]", "reps=1", "fit_texts=0",
                 "mlflow=false"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert any(line.startswith("| N | one-pass tok/s | AR tok/s | ratio | ratio / N |")
               for line in out)
    assert json.loads(out[-1])["n_tokens"] == 4
    assert main(["model=no-such-model", "mlflow=false"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:")


def test_weight_bytes_counts_shared_storage_once():
    import torch

    from eval.throughput import weight_bytes
    a, b = torch.nn.Linear(4, 4, bias=False), torch.nn.Linear(4, 4, bias=False)
    assert weight_bytes(torch.nn.Sequential(a, b)) == 2 * 16 * 4
    b.weight = torch.nn.Parameter(a.weight.data)  # tied: another Parameter, same storage
    assert weight_bytes(torch.nn.Sequential(a, b)) == 16 * 4
