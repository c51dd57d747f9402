"""Each launcher this machine has runs the tiny encoder config for two steps: plain python,
deepspeed in the form its docs teach (it passes --local_rank=N), deepspeed --no_local_rank and
torchrun (LOCAL_RANK only). Each run leaves a checkpoint and OUT/summary.json, the summary
that rank 0 also prints."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from proto.tracking import free_port

from .conftest import ROOT, TINY_ENCODER

BIN = Path(sys.executable).parent
# a launcher's variables in this process (an in-process run sets them) must not reach a child
DIST_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR",
             "MASTER_PORT")


def _exe(name: str) -> str | None:
    """The launcher installed beside this python (its children run this python), or PATH's."""
    return shutil.which(name, path=str(BIN)) or shutil.which(name)


def _prefix(launcher: str) -> list[str]:
    port = str(free_port())
    return {
        "python": [sys.executable, "-m", "encoder.train"],
        "deepspeed": [_exe("deepspeed"), "--num_gpus", "2", "--master_port", port,
                      "--module", "encoder.train"],
        "deepspeed-no-local-rank": [_exe("deepspeed"), "--no_local_rank", "--num_gpus", "2",
                                    "--master_port", port, "--module", "encoder.train"],
        "torchrun": [_exe("torchrun"), "--nproc_per_node", "2", "--master_port", port,
                     "-m", "encoder.train"],
    }[launcher]


def launch(launcher: str, out: Path, corpus: Path) -> subprocess.CompletedProcess:
    exe = launcher.split("-")[0]
    if exe != "python" and _exe(exe) is None:
        pytest.skip(f"the {exe} launcher is not installed here")
    env = {k: v for k, v in os.environ.items() if k not in DIST_VARS}
    env.update(PROTOSPACE_NO_MLFLOW="1", DS_ACCELERATOR="cpu")
    cmd = _prefix(launcher) + ["--config", str(TINY_ENCODER), f"out={out}",
                               f"data.corpus={corpus}", "threads=1", "mlflow=false",
                               "train.steps=2", "device=cpu"]
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def check_run(r: subprocess.CompletedProcess, out: Path, world: int) -> dict:
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world"] == world and summary["steps"] == 2 and summary["finished"]
    assert Path(summary["checkpoint"]) == out / "encoder.pt" and (out / "encoder.pt").is_file()
    # rank 0 printed the same summary (under a launcher, the launcher's lines follow it)
    assert json.dumps(summary) in r.stdout.splitlines()
    return summary


@pytest.fixture(scope="module")
def deepspeed_run(tmp_path_factory, enc_corpus):
    out = tmp_path_factory.mktemp("launch") / "deepspeed"
    return launch("deepspeed", out, enc_corpus), out


def test_plain_python_prints_the_summary_last_and_writes_it(tmp_path, enc_corpus):
    r = launch("python", tmp_path / "run", enc_corpus)
    check_run(r, tmp_path / "run", world=1)
    assert r.stdout.strip().splitlines()[-1] == json.dumps(
        json.loads((tmp_path / "run" / "summary.json").read_text()))


def test_deepspeed_in_its_documented_form_passes_local_rank_and_trains(deepspeed_run):
    r, out = deepspeed_run
    check_run(r, out, world=2)
    assert "'--local_rank=0'" in r.stdout and "'--local_rank=1'" in r.stdout


@pytest.mark.parametrize("launcher", ["torchrun", "deepspeed-no-local-rank"])
def test_launchers_without_the_flag_train_two_ranks(launcher, tmp_path, enc_corpus):
    r = launch(launcher, tmp_path / "run", enc_corpus)
    check_run(r, tmp_path / "run", world=2)
    assert "--local_rank" not in r.stdout


def test_encode_reads_a_launched_runs_checkpoint(deepspeed_run, tmp_path, capsys):
    from encoder.encode import main as encode
    _, out = deepspeed_run
    sol = tmp_path / "enc.safetensors"
    assert encode(["--checkpoint", str(out), "--text", "cat on a mat", "--out", str(sol),
                   "mlflow=false"]) == 0
    s = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert s["texts"] == 1 and sol.is_file()


def test_local_rank_flag_sets_the_environment_only_where_a_launcher_did_not(monkeypatch):
    from proto.config import take_local_rank
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert take_local_rank(["--local_rank", "1", "--config", "c.yaml", "a=1"]) == [
        "--config", "c.yaml", "a=1"]
    assert os.environ["LOCAL_RANK"] == "1"
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert take_local_rank(["--local_rank=1", "a=1"]) == ["a=1"]
    assert take_local_rank(["a=1", "--local-rank=3"]) == ["a=1"]
    assert os.environ["LOCAL_RANK"] == "0"


@pytest.mark.parametrize("argv", [["--local_rank=x"], ["--local_rank"], ["--local_rank", "-1"]])
def test_a_bad_local_rank_is_one_error_line(argv, monkeypatch, capsys, tmp_path):
    from encoder.train import main
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert main(["--config", str(TINY_ENCODER), f"out={tmp_path / 'x'}", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --local_rank")
    assert not (tmp_path / "x").exists()


def test_each_rank_runs_on_the_gpu_of_its_local_rank(monkeypatch):
    """DeepSpeed puts rank r's engine on cuda:r; the decoder must follow (checked without a
    GPU: torch.cuda is stood in for)."""
    import torch

    from encoder.core import EncoderError
    from encoder.train import rank_device
    chosen = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert rank_device("") == "cuda:1" and rank_device("cuda") == "cuda:1"
    assert chosen == [1, 1]
    with pytest.raises(EncoderError, match="local rank 1.*cuda:1"):
        rank_device("cuda:0")
    assert rank_device("cpu") == "cpu"
