"""The one JSON line of scripts/gpu_encoders.sh: per encoder its texts seen, time, held-out
stream accuracy (prose alone, tokens), the refinement curve from its e, the sentences in
chunks of 8, the sha256 of its encoder.pt, and whether the issue's targets are met.

  python scripts/gpu_encoders_summary.py WORK n8 n16 --wall SECONDS

WORK holds what the script made: NAME/ (encoder.train's out), NAME-eval-stream/ and
NAME-eval-sentences/ (encoder.evaluate's). Targets (docs/research/encoder/gpu-runs.md):
alone = held-out prose accuracy of the encoder's e; after K refinement steps, accuracy and
exact match of the curve from the encoder's e.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import yaml

TARGETS = {"n8": {"alone": 0.80, "steps": 5, "acc": 0.97, "exact": 0.80},
           "n16": {"alone": 0.55, "steps": 10, "acc": 0.95, "exact": 0.50}}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _prose(methods: dict) -> float | None:
    """Accuracy over the prose sources together (every source but tokens and words)."""
    rows = [v for k, v in methods.items() if k.startswith("source:")
            and k not in ("source:tokens", "source:words")]
    n = sum(r["texts"] for r in rows)
    return round(sum(r["acc"] * r["texts"] for r in rows) / n, 4) if n else None


def _curve(res: dict, arm: str) -> dict:
    return {k: {"acc": round(v["acc"], 4), "exact": round(v["exact"], 4)}
            for k, v in ((res.get("curve") or {}).get(arm) or {}).items()}


def encoder_row(work: Path, name: str) -> dict:
    run = work / name
    summary = json.loads((run / "summary.json").read_text())
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    stream = json.loads((work / f"{name}-eval-stream" / "results.json").read_text())
    sents = json.loads((work / f"{name}-eval-sentences" / "results.json").read_text())
    enc = stream["methods"]["encoder"]
    curve = _curve(stream, "encoder")
    row = {"config": f"configs/encoder/gpu-{name}.yaml", "llm": cfg["llm"],
           "positions": cfg["model"]["positions"], "steps": summary["steps"],
           "texts": summary["steps"] * cfg["train"]["global_batch"],
           "train_seconds": summary["seconds"], "finished": summary["finished"],
           "max_minutes": cfg["train"]["max_minutes"],
           "stream": {"prose_acc": _prose(enc), "tokens_acc": round(
               enc.get("source:tokens", {}).get("acc", float("nan")), 4),
               "acc": round(enc["all"]["acc"], 4), "exact": round(enc["all"]["exact"], 4),
               "texts": enc["all"]["texts"], "curve": curve,
               "curve_from_start": _curve(stream, "start")},
           "sentences_chunk8": {"acc": round(sents["methods"]["encoder"]["all"]["acc"], 4),
                                "exact": round(sents["methods"]["encoder"]["all"]["exact"], 4),
                                "curve": _curve(sents, "encoder")},
           "sha256": _sha256(run / "encoder.pt")}
    t = TARGETS[name]
    at_k = curve.get(str(t["steps"]))
    row["targets"] = {**t, "met": bool(
        row["stream"]["prose_acc"] is not None and row["stream"]["prose_acc"] >= t["alone"]
        and at_k and at_k["acc"] >= t["acc"] and at_k["exact"] >= t["exact"])}
    return row


def device() -> str:
    import torch  # lazy: the summary is read without a device too
    return torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python scripts/gpu_encoders_summary.py",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("work", type=Path)
    ap.add_argument("names", nargs="+", choices=sorted(TARGETS))
    ap.add_argument("--wall", type=float, default=0.0, help="the whole script's seconds")
    a = ap.parse_args(argv)
    try:
        rows = {n: encoder_row(a.work, n) for n in a.names}
    except (OSError, KeyError, ValueError) as exc:
        print(f"error: {a.work}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"device": device(), "wall_seconds": a.wall, **rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
