"""MLflow tracking shared by every command (imported lazily: `import mlflow` costs ~1.3 s).

Tracking URI: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db in the working directory.
Artifacts of each experiment go to ./mlartifacts/<experiment> (set explicitly, since the
default ./mlruns would follow whatever directory a run starts in). Only rank 0 logs.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import yaml

from .config import flatten, to_dict
from .models import cpu_precision


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db")


def metric_key(name: str) -> str:
    """`name` as an MLflow metric name, which takes letters, digits, _ - . / and spaces only
    (an arm called 'start+tail' is logged as 'start_tail')."""
    return re.sub(r"[^\w./ -]", "_", name)


class Run:
    """A thin handle that no-ops when tracking is disabled or on ranks > 0."""

    def __init__(self, mlflow_mod=None):
        self.mlflow = mlflow_mod

    @property
    def active(self) -> bool:
        return self.mlflow is not None

    def metrics(self, values: dict, step: int | None = None):
        if self.mlflow:
            clean = {metric_key(k): float(v) for k, v in values.items()
                     if isinstance(v, (int, float)) and v == v}
            self.mlflow.log_metrics(clean, step=step)

    def artifact(self, path: str | Path, subdir: str | None = None):
        if self.mlflow and Path(path).exists():
            self.mlflow.log_artifact(str(path), artifact_path=subdir)

    def text(self, text: str, name: str):
        if self.mlflow:
            self.mlflow.log_text(text, name)

    def dict(self, d: dict, name: str):
        if self.mlflow:
            self.mlflow.log_text(json.dumps(d, indent=1, default=str), name)

    def figure(self, fig, name: str):
        if self.mlflow:
            self.mlflow.log_figure(fig, name)

    def dataset(self, split, source: str, context: str = "training"):
        """Log the texts a run trains and evaluates on as an MLflow dataset input."""
        if not self.mlflow:
            return
        import pandas as pd  # lazy: pandas is needed only to log datasets to MLflow
        rows = [{"text_id": x.text_id, "source": x.source, "n_tokens": x.n, "split": part}
                for part, xs in (("train", split.train_corpus), ("train_raw", split.train_raw),
                                 ("heldout", split.heldout)) for x in xs]
        ds = self.mlflow.data.from_pandas(pd.DataFrame(rows), source=str(source),
                                          name=Path(str(source)).name or "texts")
        self.mlflow.log_input(ds, context=context)

    def tags(self, tags: dict):
        if self.mlflow:
            self.mlflow.set_tags({k: str(v) for k, v in tags.items()})

    def child(self, run_name: str, params: dict, metrics: dict):
        """One nested run under this one (a cell of a grid: its coordinates as params, so
        the MLflow UI can filter and compare cells)."""
        if self.mlflow:
            with self.mlflow.start_run(run_name=run_name, nested=True):
                self.mlflow.log_params({k: str(v) for k, v in params.items()})
                self.metrics(metrics)


@contextlib.contextmanager
def run(experiment: str, config=None, run_name: str | None = None, enabled: bool = True,
        params: dict | None = None):
    """Start an MLflow run in `experiment`, log the flattened config as params and as YAML."""
    if not enabled or _rank() != 0 or os.environ.get("PROTOSPACE_NO_MLFLOW") == "1":
        yield Run(None)
        return

    import mlflow  # lazy: mlflow costs ~1.3 s to import and tracking may be off
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    mlflow.set_tracking_uri(tracking_uri())
    exp = mlflow.get_experiment_by_name(experiment)
    if exp is None:
        art = Path("mlartifacts").resolve() / experiment
        mlflow.create_experiment(experiment, artifact_location=art.as_uri())
    mlflow.set_experiment(experiment)
    with _sigterm_as_interrupt(), mlflow.start_run(run_name=run_name):
        try:
            yield _start(mlflow, config, params)
        except KeyboardInterrupt:
            # Ctrl-C or kill (SIGTERM): the run ends KILLED instead of staying RUNNING forever
            mlflow.end_run("KILLED")
            raise


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """SIGTERM raises KeyboardInterrupt while inside (main thread only), so `with` blocks and
    finally clauses run when a job is killed; the previous handler is restored after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    prev = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, prev)


def _start(mlflow, config, params) -> Run:
    """The run's handle, with the flattened config logged as params and as YAML."""
    handle = Run(mlflow)
    flat = {}
    if config is not None:
        cfg = to_dict(config)
        flat.update(flatten(cfg))
        handle.text(yaml.safe_dump(cfg, sort_keys=False), "config.yaml")
    flat.update(params or {})
    # what `dtype: auto` resolves to on a CPU here, and why (fixed per machine)
    cpu = cpu_precision()
    flat.update({"precision.cpu_bf16": cpu["fast_bf16"], "precision.reason": cpu["reason"]})
    mlflow.log_params({k: str(v)[:500] for k, v in flat.items()})
    return handle


def free_port() -> int:
    """A TCP port free on the loopback interface now (for a server or a rendezvous)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def mlflow_server(store: str, artifact_root: Path | None = None, timeout: float = 90.0):
    """`mlflow server` on `store` at a free loopback port; yields its base URL once /health
    answers, and stops the server (its whole process group) on exit."""
    port = free_port()
    cmd = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
           "--backend-store-uri", store, "--workers", "1"]
    if artifact_root is not None:
        cmd += ["--default-artifact-root", Path(artifact_root).resolve().as_uri()]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        t0 = time.time()
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited with {proc.returncode} at start")
            try:
                urllib.request.urlopen(f"{base}/health", timeout=2)
                break
            except OSError:
                if time.time() - t0 > timeout:
                    raise RuntimeError(f"mlflow server did not answer within {timeout:.0f} s")
                time.sleep(0.5)
        yield base
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
