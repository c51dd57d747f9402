"""A real MLflow tracking server: two tiny encoder runs logged over HTTP, read back by REST."""
import json
import urllib.request

import pytest

from .conftest import encoder_config

def _post(url, body):
    req = urllib.request.Request(url, json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


@pytest.fixture
def server(tmp_path):
    from proto.tracking import mlflow_server
    with mlflow_server(f"sqlite:///{tmp_path / 'srv.db'}", tmp_path / "art") as url:
        yield url


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
