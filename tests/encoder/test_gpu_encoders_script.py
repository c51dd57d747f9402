"""scripts/gpu_encoders.sh in its tiny mode: the device call's whole sequence (both gpu-n*
configs through encoder.train, encoder.evaluate on stream texts and on sentences in chunks,
the packing for a device call's $OUT, the JSON line) on the tiny model on a CPU; what comes
back unpacks into checkpoints that encoder.encode reads."""
import hashlib
import json
import os
import subprocess
import tarfile

import pytest

from .conftest import ROOT

SCRIPT = ROOT / "scripts" / "gpu_encoders.sh"
MiB = 1 << 20


def _run(tmp_path, *args, **env):
    full = {k: v for k, v in os.environ.items() if k not in ("OUT", "ONLY", "TINY")}
    full.update(OMP_NUM_THREADS="1", WORK=str(tmp_path / "work"), **env)
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=ROOT, env=full, check=False,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_tiny_mode_runs_the_device_sequence_and_its_checkpoints_encode(tmp_path, capsys):
    dest = tmp_path / "dest"
    r = _run(tmp_path, str(dest), TINY="1")
    assert r.returncode == 0, r.stderr[-3000:]
    line = json.loads(r.stdout.strip().splitlines()[-1])
    assert line == json.loads((dest / "result.json").read_text())
    # what a device call brings back: at most 8 plain files of at most 16 MiB, no folders
    files = sorted(dest.iterdir())
    assert len(files) <= 8 and all(f.is_file() and f.stat().st_size <= 16 * MiB for f in files)
    parts = sorted(f for f in files if f.name.startswith("gpu-encoders.tar."))
    assert parts
    tar = tmp_path / "all.tar"
    tar.write_bytes(b"".join(p.read_bytes() for p in parts))
    unpacked = tmp_path / "unpacked"
    with tarfile.open(tar) as t:
        t.extractall(unpacked, filter="data")
    (root,) = unpacked.iterdir()
    assert json.loads((root / "result.json").read_text()) == line

    from encoder.encode import main as encode
    for name, n in (("n8", 8), ("n16", 16)):
        row = line[name]
        assert row["positions"] == n and row["llm"] == "tiny-random" and row["finished"]
        assert row["texts"] == row["steps"] * 16 and row["steps"] >= 1
        assert set(row["stream"]["curve"]) == {"0", "5", "10"}
        assert 0 <= row["stream"]["prose_acc"] <= 1 and "curve" in row["sentences_chunk8"]
        assert row["targets"]["met"] is False
        d = root / name
        for f in ("encoder.pt", "summary.json", "history.json", "config.yaml",
                  "eval-stream.json", "eval-sentences.json", f"{name}-train.log",
                  f"{name}-eval-stream.log", f"{name}-eval-sentences.log"):
            assert (d / f).is_file(), f"{name}/{f}"
        assert hashlib.sha256((d / "encoder.pt").read_bytes()).hexdigest() == row["sha256"]
        sol = tmp_path / f"{name}.safetensors"
        capsys.readouterr()
        assert encode(["--checkpoint", str(d / "encoder.pt"), "--text", "hello",
                       "--out", str(sol), "mlflow=false"]) == 0
        s = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert s["texts"] == 1 and sol.is_file()


def test_an_unknown_encoder_name_is_refused_before_anything_runs(tmp_path):
    r = _run(tmp_path, str(tmp_path / "dest"), TINY="1", ONLY="n32")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1] == "error: ONLY=n32: give n8 or n16"
    assert not (tmp_path / "work" / "n32").exists()
