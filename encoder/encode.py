"""Encode texts into a solution file with a trained encoder: one encoder call per batch, no
per-text optimisation. `python -m proto.decode` reads the file like a fitted one.

  python -m encoder.encode --checkpoint default --texts-file configs/demo_texts.txt \
      --out outputs/encoded.safetensors
  python -m encoder.encode --checkpoint outputs/encoder/tiny --text "hello there" \
      --out /tmp/enc.safetensors                               # tiny CPU run (seconds)
  python -m proto.decode outputs/encoded.safetensors

Texts of lengths the encoder was not trained on are encoded too and reported as such. The
last stdout line is JSON: texts, accuracy_mean, exact_match, seconds, untrained_lengths, out.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch


def encode_texts(enc, lm, texts: list[str], batch_size: int = 64) -> tuple[torch.Tensor, list]:
    from .evaluate import encode_tokens
    toks = [lm.tokenize(t) for t in texts]
    return encode_tokens(enc, lm, toks, texts, batch_size), toks


def solution_meta(lm, decoder, blob: dict, texts, toks, acc, c) -> dict:
    trained = set(blob["lengths"])
    return {
        "model": lm.identity, "precision": str(lm.dtype).replace("torch.", ""),
        "arrangement": {"name": decoder.arr.name, "prefix": list(decoder.arr.prefix)},
        "recipe": {"name": "encoded"},
        "encoded": {"checkpoint": blob["path"], "step": blob["step"],
                    "kind": blob["config"]["model"]["kind"], "lengths": sorted(trained)},
        "rows": [{"text": t, "restart": 0, "token_ids": ids, "accuracy": a, "c_tokens": k,
                  "steps": 0, "seconds": 0.0, "loss": None, "status": "encoded",
                  "trained_length": len(ids) in trained}
                 for t, ids, a, k in zip(texts, toks, acc, c)],
    }


def main(argv=None) -> int:
    from proto import solution
    from proto.cli import _read_texts
    from proto.config import ConfigError
    from proto.tracking import run as mlflow_run

    from . import checkpoint as ckpt
    from .core import EncoderError
    p = argparse.ArgumentParser(prog="python -m encoder.encode", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default="default",
                   help="encoder file, training output dir, or 'default' (shipped)")
    p.add_argument("--text", action="append", help="a text to encode (repeatable)")
    p.add_argument("--texts-file", help="one text per line (UTF-8)")
    p.add_argument("--out", required=True, help="solution file to write (.safetensors)")
    p.add_argument("--device", default="")
    p.add_argument("--no-mlflow", action="store_true")
    a = p.parse_args(argv)
    t0 = time.time()
    try:
        texts = _read_texts(a)
        out = Path(a.out)
        if out.is_dir():
            raise ConfigError(f"--out {out} is a directory")
        enc, decoder, m, blob = ckpt.load(a.checkpoint, device=a.device)
        lm = decoder.lm
        for t in texts:
            if not lm.tokenize(t):
                raise ConfigError(f"text {t!r} has no tokens")
    except (ConfigError, EncoderError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    e, toks = encode_texts(enc, lm, texts)
    with enc.decoding():
        acc = decoder.accuracy(e, m, toks).tolist()
    c = [round(x * len(ids)) for x, ids in zip(acc, toks)]
    meta = solution_meta(lm, decoder, blob, texts, toks, acc, c)
    mm = None if m is None else m.detach().float().cpu().reshape(1, -1).expand(len(texts), -1)
    solution.save(out, e, mm, meta)
    untrained = sorted({len(ids) for ids in toks} - set(blob["lengths"]))
    summary = {"texts": len(texts), "accuracy_mean": sum(acc) / len(acc),
               "exact_match": sum(x >= 1 - 1e-9 for x in acc) / len(acc),
               "seconds": round(time.time() - t0, 2), "untrained_lengths": untrained,
               "checkpoint": blob["path"], "out": str(out)}
    with mlflow_run("encoder", None, run_name="encode", enabled=not a.no_mlflow,
                    params={"checkpoint": blob["path"], "texts": len(texts)}) as mr:
        mr.tags({"stage": "encoder-encode", "model": lm.name})
        mr.metrics({"encode/accuracy_mean": summary["accuracy_mean"],
                    "encode/exact_match": summary["exact_match"]})
    if untrained:
        print(f"note: lengths {untrained} were not in the encoder's training lengths "
              f"{blob['lengths']}", file=sys.stderr)
    for t, x in zip(texts, acc):
        print(f"{x:.3f}  {t}")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
