"""A screenshot of the MLflow UI's compare view over encoder runs (docs/mlflow-compare.png).

  python scripts/mlflow_screenshot.py      # every finished encoder run with eval/one_pass_acc
  python scripts/mlflow_screenshot.py --runs enc-decode enc-regress default lora-mean-mix \\
      minilm-decode lora-mean-regress --size 2400,2050     # docs/mlflow-compare.png
  python scripts/mlflow_screenshot.py --runs default enc-decode enc-regress --out /tmp/x.png

Starts an MLflow server on the store (sqlite:///mlflow.db unless MLFLOW_TRACKING_URI or --store is
given) on a free loopback port, finds the runs of experiment `encoder` through the REST API,
opens the compare view in headless Chromium (Debian's `chromium` package; `apt-get install
chromium`) and stops the server it started. Bad input (no Chromium, no such runs) ends with
one `error:` line and exit 2.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from proto.tracking import mlflow_server  # noqa: E402

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--hide-scrollbars"]


def api(base: str, path: str, body: dict | None = None) -> dict:
    req = urllib.request.Request(f"{base}/api/2.0/mlflow/{path}",
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def pick_runs(base: str, names: list[str]) -> tuple[str, list[str]]:
    exp = api(base, "experiments/get-by-name?experiment_name=encoder")["experiment"]
    runs = api(base, "runs/search", {"experiment_ids": [exp["experiment_id"]],
                                      "max_results": 500}).get("runs", [])
    finished = [r for r in runs if r["info"]["status"] == "FINISHED"
                and any(m["key"] == "eval/one_pass_acc" for m in r["data"].get("metrics", []))]
    if names:
        by: dict[str, dict] = {}
        for r in sorted(finished, key=lambda r: -int(r["info"]["start_time"])):
            by.setdefault(r["info"]["run_name"], r)  # a name used twice: its newest run
        missing = [n for n in names if n not in by]
        if missing:
            raise ValueError(f"no finished encoder run with eval/one_pass_acc named {missing}")
        finished = [by[n] for n in names]
    if len(finished) < 2:
        raise ValueError("the compare view needs at least two finished encoder runs")
    return exp["experiment_id"], [r["info"]["run_id"] for r in finished]


def shoot(url: str, out: Path, size: str) -> None:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if not exe:
        raise ValueError("Chromium not found (apt-get install chromium)")
    with tempfile.TemporaryDirectory() as prof:
        subprocess.run([exe, *CHROMIUM_FLAGS, f"--user-data-dir={prof}", f"--window-size={size}",
                        "--virtual-time-budget=30000", f"--screenshot={out}", url],
                       check=True, capture_output=True, timeout=180)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--store", default=os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db"))
    ap.add_argument("--runs", nargs="*", default=[], help="run names (default: all finished)")
    ap.add_argument("--out", default="docs/mlflow-compare.png")
    ap.add_argument("--size", default="1600,1500", help="window width,height in pixels")
    a = ap.parse_args(argv)
    try:
        with mlflow_server(a.store) as base:
            exp, ids = pick_runs(base, a.runs)
            q = urllib.parse.urlencode({"runs": json.dumps(ids),
                                        "experiments": json.dumps([exp])})
            out = Path(a.out)
            out.parent.mkdir(parents=True, exist_ok=True)
            shoot(f"{base}/#/compare-runs?{q}", out.resolve(), a.size)
    except (ValueError, RuntimeError, OSError, subprocess.SubprocessError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"out": str(out), "runs": len(ids), "url": f"{base}/#/compare-runs?{q}"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
