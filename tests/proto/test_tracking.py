"""proto.tracking: a killed job's MLflow run ends KILLED, not RUNNING forever."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CHILD = """
import sys, time
from proto.tracking import run
with run("t", {"a": 1}, run_name="victim") as r:
    r.metrics({"x": 1.0})
    print("started", flush=True)
    time.sleep(60)
"""


def test_sigterm_ends_the_run_killed_and_the_job_exits(tmp_path):
    env = dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path}/m.db",
               PYTHONPATH=str(ROOT))
    env.pop("PROTOSPACE_NO_MLFLOW", None)
    p = subprocess.Popen([sys.executable, "-c", CHILD], cwd=tmp_path, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "started"
    p.send_signal(signal.SIGTERM)
    t0 = time.time()
    rc = p.wait(timeout=60)
    assert rc != 0 and time.time() - t0 < 30
    from mlflow import MlflowClient
    client = MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"])  # not the global URI
    runs = client.search_runs([client.get_experiment_by_name("t").experiment_id])
    assert [(r.info.run_name, r.info.status, r.data.params["a"]) for r in runs] == [
        ("victim", "KILLED", "1")]
    # every run also says how `dtype: auto` resolves on this machine's CPU, and why
    assert {"precision.cpu_bf16", "precision.reason"} <= set(runs[0].data.params)


def test_metric_names_are_made_valid_for_mlflow():
    """Run.metrics logs every name in MLflow's character set, and drops non-numbers and NaN."""
    from proto.tracking import Run, metric_key

    class Fake:
        def log_metrics(self, values, step=None):
            self.logged = values

    fake = Fake()
    Run(fake).metrics({"start+tail/solved": 3, "eval/acc/source:x": 0.5, "n": float("nan"),
                       "s": "text"})
    assert fake.logged == {"start_tail/solved": 3.0, "eval/acc/source_x": 0.5}
    assert metric_key("a-b.c/d e_1") == "a-b.c/d e_1"
