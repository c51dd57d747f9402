"""Encode texts into a solution file with a trained encoder: one encoder call per batch, then
optionally K refinement steps per text (the fitter, batched). `python -m proto.decode` reads
the file like a fitted one.

  python -m encoder.encode --checkpoint default --texts-file configs/demo_texts.txt \\
      --out outputs/encoded.safetensors
  python -m encoder.encode --checkpoint default --texts-file F --out X refine_steps=10
  python -m encoder.encode --checkpoint default --texts-file F --out X chunk=8 refine_steps=10
  python -m encoder.encode --checkpoint default --texts-file F --out X chunk=auto
  python -m encoder.encode --checkpoint outputs/encoder/tiny --text "hello there" \\
      --out /tmp/enc.safetensors mlflow=false                   # tiny CPU run (seconds)
  python -m proto.decode outputs/encoded.safetensors

refine_steps=K runs K decode-loss steps on each encoded e (Adam at refine_lr, constant, no
noise, m frozen at the encoder's m); a text that decodes exactly stops early. The decoder runs
in the precision the encoder was trained in unless dtype= says otherwise. Texts of lengths the
encoder was not trained on are encoded too and reported as such (with chunk=0; a text longer
than the encoder's maximum is then refused). Each text is printed as its e's decode in one
pass (after refinement, if any) beside its accuracy, each run of wrong tokens as
[decoded→wanted]; the default encoder's e's for a demo text, chunks of 6, print as
`0.643  A[ child child child child child→ small dog followed the children] all the way ...`
(after refine_steps=10 all three demo texts decode exactly).

chunk=C splits each text's tokens into chunks of C (the last may be shorter), one e each:
every chunk of every text is encoded in ONE encoder call and decoded in one forward pass,
refined per chunk (batched across all texts) when refine_steps > 0, and written as a chunked
solution file (proto.solution; proto.decode rebuilds the whole texts). Each whole text is
printed as its chunks decode, and it counts as exact when all its chunks are. chunk=auto is the
checkpoint's stored chunk length, else the longest length it trained on (capped by its
positions): the default, so no text is encoded past the lengths its encoder learned; a C
above the encoder's maximum is refused; chunk=0 is one e per text. The shipped default is
trained at its chunks' lengths (3 and 6 tokens), so chunk=auto is 6: on held-out
15-20-token sentences 0.62 of the tokens alone and all of them with refine_steps=10, against
0.27 as one e per text (docs/research/positional-encoder, the default after two more turns).

The last stdout line is JSON: texts, accuracy_mean (mean over texts), token_accuracy (over all
tokens), exact_match (after refinement when refine_steps > 0, with the encoded_ ones beside
them), chunk and chunks (e's written), seconds, untrained_lengths, out.
"""
from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

import torch

from proto import config as C, solution
from proto.io import read_texts
from proto.tracking import run as mlflow_run

from . import checkpoint as ckpt
from .core import EncoderError
from .models import encode_tokens
from .refine import REFINE_LR, curve, refine_recipe


@dataclasses.dataclass
class EncodeConfig:
    checkpoint: str = "default"      # encoder file, training output dir, or 'default'
    text: list[str] = dataclasses.field(default_factory=list)
    texts_file: str = ""             # one text per line (UTF-8)
    out: str = ""                    # solution file to write (.safetensors)
    device: str = ""
    dtype: str = ""                  # '' = the precision the encoder was trained in
    refine_steps: int = 0            # decode-loss steps from the encoder's e (0 = none)
    refine_lr: float = REFINE_LR
    batch_size: int = 64
    chunk: int | str = "auto"        # tokens per e: C, auto (the checkpoint's) or 0 (whole text)
    mlflow: bool = True

    def __post_init__(self):
        if not self.out:
            raise ValueError("--out FILE is required")
        if self.chunk != "auto" and not (isinstance(self.chunk, int) and self.chunk >= 0):
            raise ValueError(f"chunk={self.chunk!r}: give a number of tokens >= 1, auto, or 0 "
                             f"(one e per text)")
        if self.refine_steps < 0 or self.refine_lr <= 0 or self.batch_size < 1:
            raise ValueError("refine_steps must be >= 0, refine_lr > 0, batch_size >= 1")


def marked(lm, pred: list[int], ids: list[int]) -> str:
    """The decoded text with each run of wrong tokens shown as [decoded→wanted]."""
    out, i = [], 0
    while i < len(ids):
        j = i
        while j < len(ids) and pred[j] != ids[j]:
            j += 1
        if j == i:
            out.append(lm.detokenize(ids[i: i + 1]))
            i += 1
        else:
            out.append(f"[{lm.detokenize(pred[i:j])}→{lm.detokenize(ids[i:j])}]")
            i = j
    return "".join(out)


def hit_rate(pred: list[int], ids: list[int]) -> float:
    return sum(p == t for p, t in zip(pred, ids)) / len(ids)


def chunk_length(spec: int | str, enc, blob: dict) -> int:
    """Tokens per e (0 = whole texts); ValueError (one line) above the encoder's maximum."""
    if spec == "auto":
        # the length the encoder is strongest at, unless the checkpoint names one
        size = blob.get("chunk") or max(blob["lengths"])
        return min(size, enc.max_tokens) if enc.max_tokens else size
    if enc.max_tokens and spec > enc.max_tokens:
        raise ValueError(f"chunk={spec} is more than the encoder's maximum of "
                         f"{enc.max_tokens} tokens (chunk=auto: "
                         f"{chunk_length('auto', enc, blob)})")
    return spec


def solution_meta(lm, decoder, blob: dict, texts, toks, acc, c, steps) -> dict:
    trained = set(blob["lengths"])
    return {
        "model": lm.identity, "precision": lm.precision,
        "arrangement": decoder.arr.to_dict(),
        "recipe": {"name": "encoded"},
        "encoded": {"checkpoint": blob["path"], "step": blob["step"],
                    "kind": blob["config"]["model"]["kind"], "lengths": sorted(trained)},
        "rows": [{"text": t, "restart": 0, "token_ids": ids, "accuracy": a, "c_tokens": k,
                  "steps": s, "seconds": 0.0, "loss": None,
                  "status": "refined" if s else "encoded", "trained_length": len(ids) in trained}
                 for t, ids, a, k, s in zip(texts, toks, acc, c, steps)],
    }


def load_inputs(cfg: EncodeConfig):
    """(texts, encoder, decoder, m, blob, chunk length); EncoderError or ValueError with one
    line."""
    texts = read_texts(cfg.text, cfg.texts_file)
    if Path(cfg.out).is_dir():
        raise ValueError(f"--out {cfg.out} is a directory")
    enc, decoder, m, blob = ckpt.load(cfg.checkpoint, device=cfg.device, dtype=cfg.dtype)
    if cfg.refine_steps and m is None:
        # refinement fits e with m frozen (encoder.refine), so it needs the encoder's m
        raise ValueError(f"encoder {blob['path']} decodes with arrangement "
                         f"{decoder.arr.name}, without m: refine_steps needs an m")
    size = chunk_length(cfg.chunk, enc, blob)
    hint = "" if size else (f"; chunk=C encodes it as several e's of C tokens (chunk=auto: "
                            f"{chunk_length('auto', enc, blob)})")
    for t in texts:
        n = len(decoder.lm.tokenize(t))
        if not size and enc.max_tokens and n > enc.max_tokens:
            raise ValueError(f"text {t[:40]!r}... has {n} tokens, more than the encoder's "
                             f"maximum of {enc.max_tokens}{hint}")
        try:
            decoder.check_length(min(n, size) if size else n, f"text {t[:40]!r}")
        except ValueError as exc:
            raise ValueError(f"{exc}{hint}") from None
    return texts, enc, decoder, m, blob, size


def write(cfg, lm, decoder, blob, em, parts, pred, steps) -> None:
    """The solution file: a row per text, or per chunk with the whole texts beside them."""
    (e, m), (texts, toks, chunks, units) = em, parts
    acc = [hit_rate(p, ids) for p, ids in zip(pred, units)]
    c = [round(x * len(ids)) for x, ids in zip(acc, units)]
    mm = None if m is None else m.detach().float().cpu().reshape(1, -1).expand(len(units), -1)
    unit_texts = [lm.detokenize(ids) for ids in units] if chunks else texts
    meta = solution_meta(lm, decoder, blob, unit_texts, units, acc, c, steps)
    if chunks:
        meta = chunked_meta(meta, chunks, texts, toks)
    solution.save(Path(cfg.out), e, mm, meta)


def chunked_meta(meta: dict, chunks: list[dict], texts, toks) -> dict:
    """The rows of a chunk-per-row file, with each chunk's place in its text."""
    rows = [{**r, **{k: c[k] for k in ("text_id", "chunk", "span")}}
            for r, c in zip(meta["rows"], chunks)]
    return {**meta, "rows": rows,
            "texts": [{"text": t, "token_ids": ids} for t, ids in zip(texts, toks)]}


def whole_texts(chunks: list[dict] | None, n: int, pred: list[list[int]]) -> list[list[int]]:
    """Each text's prediction: its chunks' predictions joined in chunk order."""
    if not chunks:
        return pred
    return [[tok for i in ix for tok in pred[i]] for ix in solution.by_text(chunks, n)]


def scores(acc: list[float], toks, prefix: str) -> dict:
    """Mean accuracy over texts, over all tokens, and the share of texts exact."""
    n = sum(len(t) for t in toks)
    return {f"{prefix}accuracy_mean": sum(acc) / len(acc),
            f"{prefix}token_accuracy": sum(a * len(t) for a, t in zip(acc, toks)) / n,
            f"{prefix}exact_match": sum(x >= 1 - 1e-9 for x in acc) / len(acc)}


def refine(cfg: EncodeConfig, enc, decoder, m, e, toks):
    """K refinement steps from e (the plain decoder: the encoder is released first)."""

    enc.release()
    recipe = refine_recipe(cfg.refine_lr, cfg.refine_steps)
    res = curve(decoder.lm, recipe, toks, e, m.detach().float().cpu(), None,
                ks=(cfg.refine_steps,), batch_size=cfg.batch_size)["results"]
    return torch.stack([r.e for r in res]), [r.steps for r in res]


def main(argv=None) -> int:
    cfg = C.parse_cli(EncodeConfig, __doc__, argv, prog="python -m encoder.encode",
                      paths={"checkpoint": "encoder file, training output dir, or 'default'",
                             "texts_file": "one text per line (UTF-8)",
                             "out": "solution file to write (.safetensors)"},
                      lists={"text": "a text to encode (repeatable)"})
    if cfg is None:
        return 2
    t0 = time.time()
    try:
        texts, enc, decoder, m, blob, size = load_inputs(cfg)
    except (ValueError, EncoderError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    lm = decoder.lm
    toks = [lm.tokenize(t) for t in texts]
    chunks = solution.chunk_rows(toks, size) if size else None
    units = [c["token_ids"] for c in chunks] if chunks else toks
    # a chunked encode is one encoder call and one decoding pass over all chunks
    batch = len(units) if chunks else cfg.batch_size
    e = encode_tokens(enc, units, None if chunks else texts, batch_size=batch).cpu()
    with enc.decoding():
        pred = decoder.predictions(e, m, units, batch)
    enc_pred, steps = pred, [0] * len(units)
    if cfg.refine_steps:
        e, steps = refine(cfg, enc, decoder, m, e, units)
        # what the written e's decode to, as proto.decode will read them
        pred = decoder.predictions(e, m, units, batch)
    write(cfg, lm, decoder, blob, (e, m), (texts, toks, chunks, units), pred, steps)
    whole = whole_texts(chunks, len(texts), pred)
    text_acc = [hit_rate(p, ids) for p, ids in zip(whole, toks)]
    untrained = sorted({len(ids) for ids in units} - set(blob["lengths"]))
    encoded = [hit_rate(p, ids) for p, ids in zip(whole_texts(chunks, len(texts), enc_pred),
                                                   toks)]
    summary = {"texts": len(texts), **scores(text_acc, toks, ""),
               "refine_steps": cfg.refine_steps,
               **(scores(encoded, toks, "encoded_") if cfg.refine_steps else {}),
               "chunk": size, "chunks": len(units),
               "precision": lm.precision,
               "seconds": round(time.time() - t0, 2), "untrained_lengths": untrained,
               "checkpoint": blob["path"], "out": cfg.out}
    with mlflow_run("encoder", cfg, run_name="encode", enabled=cfg.mlflow,
                    params={"checkpoint": blob["path"], "texts": len(texts)}) as mr:
        mr.tags({"stage": "encoder-encode", "model": lm.name})
        mr.metrics({"encode/accuracy_mean": summary["accuracy_mean"],
                    "encode/exact_match": summary["exact_match"]})
    # chunks are shorter than the training lengths by design (output position i reads only
    # e, m and i); a whole text at an untrained length is worth a note
    if untrained and not chunks:
        print(f"note: lengths {untrained} were not in the encoder's training lengths "
              f"{blob['lengths']}", file=sys.stderr)
    for p, ids, x in zip(whole, toks, text_acc):
        print(f"{x:.3f}  {marked(lm, p, ids)}")
    C.print_summary(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
