"""Portable encoder files: the trained weights and everything needed to decode with them.

An encoder file (torch, weights_only-loadable) holds: format, the resolved config, the
trainable state (adapters or small model, pooling, head, the offset and the m buffers), the
decoder's identity (name + weights sha256), arrangement (name + prefix ids), the lengths it was
trained on, the corpus it came from and the step. It is refused for any other decoder weights.
`default` names the file shipped in encoder/shipped/ for the default model.
"""
from __future__ import annotations

import io
from pathlib import Path

import torch

from proto import config as C
from proto.arrangement import Arrangement
from proto.io import atomic_write_bytes

from .config import EncoderConfig
from .core import EncoderError, load_llm
from .losses import Decoder
from .models import Encoder

FORMAT = "protospace.encoder/1"
SHIPPED = Path(__file__).resolve().parent / "shipped"


def save(path: str | Path, enc: Encoder, cfg: EncoderConfig, lm, decoder: Decoder,
         lengths: list[int], corpus: dict | None, step: int, metrics: dict | None = None):
    blob = {"format": FORMAT, "config": C.to_dict(cfg), "state": enc.trainable_state(),
            "llm": lm.identity, "d_model": lm.d_model,
            "arrangement": {"name": decoder.arr.name, "prefix": list(decoder.arr.prefix)},
            "lengths": list(lengths), "corpus": corpus, "step": step,
            "metrics": metrics or {}}
    buf = io.BytesIO()
    torch.save(blob, buf)
    return atomic_write_bytes(path, buf.getvalue())


def resolve(spec: str) -> Path:
    """A checkpoint path: an encoder file, a training output dir, or 'default'."""
    if spec == "default":
        files = sorted(SHIPPED.glob("*.pt"))
        if not files:
            raise EncoderError("no encoder is shipped in encoder/shipped/")
        return files[0]
    p = Path(spec)
    if p.is_dir():
        p = p / "encoder.pt"
    if not p.is_file():
        raise EncoderError(f"encoder checkpoint {spec} not found")
    return p


def read(spec: str) -> dict:
    p = resolve(spec)
    try:
        blob = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a damaged file
        raise EncoderError(f"cannot read encoder checkpoint {p}: {type(exc).__name__}") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise EncoderError(f"{p} is not a protospace encoder checkpoint")
    blob["path"] = str(p)
    return blob


def load(spec: str, lm=None, device: str = "", dtype: str = "auto"):
    """(encoder in eval mode, decoder, m, blob) for checkpoint `spec`; lm is loaded if None."""
    blob = read(spec)
    cfg = C.from_dict(EncoderConfig, blob["config"])
    lm = lm or load_llm(blob["llm"]["name"], device, dtype)
    if lm.weights_sha256 != blob["llm"]["weights_sha256"]:
        raise EncoderError(f"encoder {blob['path']} belongs to decoder {blob['llm']['name']!r} "
                           f"(weights {blob['llm']['weights_sha256'][:12]}), not to "
                           f"{lm.name!r} ({lm.weights_sha256[:12]})")
    state = blob["state"]
    m = state.get("m")
    enc = Encoder(cfg.model, lm, state["offset"], m, train_m=cfg.m == "learned")
    missing, unexpected = enc.load_state_dict(state, strict=False)
    if unexpected:
        raise EncoderError(f"encoder {blob['path']} holds unknown weights, e.g. {unexpected[0]}")
    enc.to(lm.device).eval()
    arr = Arrangement(blob["arrangement"]["name"], tuple(blob["arrangement"]["prefix"]))
    return enc, Decoder.of(lm, arr), (None if m is None else m.to(lm.device)), blob
