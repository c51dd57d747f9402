"""A real MLflow tracking server: two tiny encoder runs logged over HTTP, read back by REST."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from .conftest import encoder_config

MLFLOW = Path(sys.executable).with_name("mlflow")


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(url, body):
    req = urllib.request.Request(url, json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


@pytest.fixture
def server(tmp_path):
    port = _port()
    cmd = [str(MLFLOW) if MLFLOW.exists() else "mlflow", "server", "--host", "127.0.0.1",
           "--port", str(port), "--backend-store-uri", f"sqlite:///{tmp_path / 'srv.db'}",
           "--default-artifact-root", (tmp_path / "art").as_uri(), "--workers", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"{url}/health", timeout=2)
                break
            except OSError:
                if proc.poll() is not None:
                    pytest.fail("mlflow server exited at start")
                time.sleep(0.5)
        else:
            pytest.fail("mlflow server did not answer /health within 60 s")
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def test_encoder_runs_are_comparable_on_a_tracking_server(server, tmp_path, monkeypatch,
                                                          enc_corpus):
    from encoder.train import Trainer
    from proto.models import load_model
    monkeypatch.delenv("PROTOSPACE_NO_MLFLOW", raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server)
    monkeypatch.chdir(tmp_path)
    for loss in ("decode", "mix"):
        cfg = encoder_config(tmp_path / loss, enc_corpus, "mlflow=true", f"loss.kind={loss}")
        Trainer(cfg, lm=load_model("tiny-random", device="cpu"), log=lambda s: None).run()
    exp = _post(f"{server}/api/2.0/mlflow/experiments/search",
                {"max_results": 100, "filter": "name = 'encoder'"})["experiments"][0]
    runs = _post(f"{server}/api/2.0/mlflow/runs/search",
                 {"experiment_ids": [exp["experiment_id"]], "max_results": 10})["runs"]
    assert len(runs) == 2
    keys = []
    for r in runs:
        assert r["info"]["status"] == "FINISHED"
        params = {p["key"]: p["value"] for p in r["data"]["params"]}
        metrics = {m["key"]: m["value"] for m in r["data"]["metrics"]}
        tags = {t["key"]: t["value"] for t in r["data"]["tags"]}
        keys.append(set(params))
        for k in ("eval/one_pass_acc", "eval/exact_match", "eval/knn_acc", "train/loss"):
            assert k in metrics, k
        assert tags["stage"] == "encoder-train" and tags["model"] == "tiny-random"
        assert params["loss.kind"] in ("decode", "mix")
        assert r["inputs"]["dataset_inputs"], "the corpus is logged as an input"
    assert keys[0] == keys[1]  # the same param keys: comparable side by side
