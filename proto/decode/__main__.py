"""`python -m proto.decode`: decode every row of a solution file in one forward pass each.

  python -m proto.decode sols.safetensors                  # prints each text, then JSON
  python -m proto.fit --texts-file F --chunk 8 --out chunks.safetensors \\
      && python -m proto.decode chunks.safetensors          # several e per text, rebuilt
  python -m proto.decode sols.safetensors model=tiny-random mlflow=false
  python -m proto.fit --model tiny-random --text "hello" max_steps=300 --out /tmp/s.safetensors \\
      && python -m proto.decode /tmp/s.safetensors          # tiny CPU run

The decoder runs in the precision the solution was made in unless dtype= says otherwise.
Prints the decoded text of each row, then a one-line JSON summary (accuracy per row against
the recorded tokens). A chunked file (several e per text, proto.solution) is decoded in ONE
batched forward pass over all chunks of all texts; each whole text is rebuilt from its chunks'
predictions and printed, and the summary adds per-text accuracy and exact match (a text is
exact when all its chunks are) beside the per-row results. Logs a run to MLflow (experiment `proto`). Errors are one line on
stderr and exit code 2.
"""
from __future__ import annotations

import dataclasses
import sys

import torch

from proto import config as C, solution
from proto.arrangement import Arrangement
from proto.decode import autoregressive, hits
from proto.models import ModelLoadError, load_model
from proto.onepass import OnePass
from proto.tracking import run as mlflow_run


@dataclasses.dataclass
class DecodeConfig:
    solution: str = ""               # solution file written by proto.fit or encoder.encode
    model: str = ""                  # '' = the model recorded in the solution
    device: str = ""
    dtype: str = ""                  # '' = the precision the solution was made in
    mlflow: bool = True

    def __post_init__(self):
        if not self.solution:
            raise ValueError("no solution file given: python -m proto.decode FILE")


def load(cfg: DecodeConfig):
    """(e, m, meta, arrangement, lm); SolutionError / ModelLoadError / ValueError one line."""
    e, m, meta = solution.load(cfg.solution)
    arr = Arrangement.from_dict(meta["arrangement"])
    lm = load_model(cfg.model or meta["model"]["name"], device=cfg.device or None,
                    dtype=cfg.dtype, record=meta.get("precision"), what=cfg.solution)
    onepass = OnePass(lm, arr)
    for i, row in enumerate(meta["rows"]):
        onepass.check_length(len(row["token_ids"]), f"row {i}")
    # said once the model and every row are accepted: bad input stays one error line
    if lm.precision_note:
        print(f"note: {lm.precision_note}", file=sys.stderr)
    return e, m, meta, arr, lm


def predict(lm, arr, e, m, meta) -> list[list[int]]:
    """Each row's argmax tokens (OnePass.decode: the configuration a fit checks its solved rows
    in). A chunked file's rows all go in one batch: its texts decode in one forward pass."""
    toks = [row["token_ids"] for row in meta["rows"]]
    if arr.autoregressive:
        return [autoregressive(lm, arr, e[i], len(t))[0].tolist() for i, t in enumerate(toks)]
    batch = len(toks) if solution.is_chunked(meta) else OnePass.DECODE_BATCH
    return OnePass(lm, arr).decode(e, m, toks, batch_size=batch)


def score(pred: list[int], ids: list[int]) -> dict:
    acc, c = hits(torch.tensor([pred]), torch.tensor([ids]))
    return {"accuracy": acc[0], "c_tokens": c[0], "n_tokens": len(ids), "exact": acc[0] == 1.0}


def decode_rows(lm, arr, e, m, meta, preds=None) -> list[dict]:
    """Every row decoded, printed (unless the file is chunked: its whole texts are printed
    instead), and scored against its recorded tokens."""
    preds = predict(lm, arr, e, m, meta) if preds is None else preds
    out = []
    for i, (row, pred) in enumerate(zip(meta["rows"], preds)):
        if not solution.is_chunked(meta):
            print(lm.detokenize(pred))
        out.append({"row": i, **score(pred, row["token_ids"]),
                    "recorded_accuracy": row.get("accuracy"),
                    **{k: row[k] for k in ("text_id", "chunk", "span") if k in row}})
    return out


def decode_texts(lm, meta, preds) -> list[dict]:
    """Each whole text of a chunked file rebuilt from its chunks' predictions, printed and
    scored: exact only when every chunk is."""
    out = []
    for t, ix in enumerate(solution.text_rows(meta)):
        pred = [tok for i in ix for tok in preds[i]]
        print(lm.detokenize(pred))
        out.append({"text_id": t, "chunks": len(ix),
                    **score(pred, meta["texts"][t]["token_ids"])})
    return out


def summarise(cfg, lm, e, m, meta, arr) -> dict:
    preds = predict(lm, arr, e, m, meta)
    rows = decode_rows(lm, arr, e, m, meta, preds)
    out = {"solution": cfg.solution, "rows": len(rows), "exact": sum(r["exact"] for r in rows),
           "accuracy_mean": sum(r["accuracy"] for r in rows) / len(rows)}
    if solution.is_chunked(meta):
        texts = decode_texts(lm, meta, preds)
        n = sum(t["n_tokens"] for t in texts)
        out.update({"texts": len(texts), "texts_exact": sum(t["exact"] for t in texts),
                    "text_accuracy_mean": sum(t["accuracy"] for t in texts) / len(texts),
                    "token_accuracy": sum(t["c_tokens"] for t in texts) / n,
                    "text_results": texts})
    return {**out, "model": lm.name, "results": rows}


def main(argv=None) -> int:
    cfg = C.parse_cli(DecodeConfig, __doc__, argv, prog="python -m proto.decode",
                      positional={"solution": "solution file written by proto.fit or "
                                              "encoder.encode"})
    if cfg is None:
        return 2
    try:
        e, m, meta, arr, lm = load(cfg)
    except (solution.SolutionError, ModelLoadError, ValueError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    warn = None
    if lm.weights_sha256 != meta["model"]["weights_sha256"]:
        warn = (f"model weights differ from the ones the solution was fitted with "
                f"({lm.weights_sha256[:12]} vs {meta['model']['weights_sha256'][:12]})")
        print(f"warning: {warn}", file=sys.stderr)
    with mlflow_run("proto", None, run_name="decode", enabled=cfg.mlflow,
                    params={"solution": cfg.solution, "model": lm.name}) as mr:
        summary = {**summarise(cfg, lm, e, m, meta, arr), **({"warning": warn} if warn else {})}
        mr.metrics({"decode/accuracy_mean": summary["accuracy_mean"],
                    "decode/exact": summary["exact"],
                    **({"decode/texts_exact": summary["texts_exact"]} if "texts" in summary
                       else {})})
    C.print_summary(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
