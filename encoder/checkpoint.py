"""Portable encoder files: the trained weights and everything needed to decode with them.

An encoder file (torch, weights_only-loadable) holds: format, the resolved config, the
trainable state (adapters or small model, pooling, head, the offset and the m buffers), the
decoder's identity (name + weights sha256), arrangement (name + prefix ids), the lengths it was
trained on, the corpus it came from and the step. It is refused for any other decoder weights.
`default` names the file shipped in encoder/shipped/ for the default model.
"""
from __future__ import annotations

import io
import sys
from pathlib import Path

import torch

from proto import config as C
from proto.arrangement import Arrangement
from proto.io import atomic_write_bytes
from proto.models import DEFAULT_MODEL

from .config import EncoderConfig
from .core import EncoderError, load_llm
from .losses import Decoder
from .models import STATS, Encoder, peft_key

FORMAT = "protospace.encoder/1"
SHIPPED = Path(__file__).resolve().parent / "shipped"


def save(path: str | Path, enc: Encoder, cfg: EncoderConfig, lm, decoder: Decoder,
         lengths: list[int], corpus: dict | None, step: int, metrics: dict | None = None):
    blob = {"format": FORMAT, "config": C.to_dict(cfg), "state": enc.trainable_state(),
            "llm": lm.identity, "d_model": lm.d_model,
            "precision": lm.precision,
            "arrangement": decoder.arr.to_dict(),
            "lengths": list(lengths), "corpus": corpus, "step": step,
            "metrics": metrics or {}}
    buf = io.BytesIO()
    torch.save(blob, buf)
    return atomic_write_bytes(path, buf.getvalue())


def train_command(spec: str) -> str:
    """The command that trains the encoder a checkpoint path names."""
    out = Path(spec)
    out = out.parent if out.suffix == ".pt" else out
    cfg = C.producing_config("encoder", out)
    if cfg is not None:
        return f"python -m encoder.train --config {cfg}"
    return f"python -m encoder.train --config configs/encoder/default.yaml out={out}"


def shipped(model: str = DEFAULT_MODEL) -> Path:
    """The default encoder of decoder `model`: encoder/shipped/<model>.pt, whose recorded
    decoder read() checks; never another model's file."""
    p = SHIPPED / f"{model}.pt"
    if not p.is_file():
        have = sorted(f.stem for f in SHIPPED.glob("*.pt"))
        raise EncoderError(f"no default encoder is shipped for model {model!r} (encoder/shipped/ "
                           f"holds: {', '.join(have) or 'nothing'}); give --checkpoint FILE")
    return p


def resolve(spec: str, model: str = DEFAULT_MODEL) -> Path:
    """A checkpoint path: an encoder file, a training output dir, 'default' (the shipped
    encoder of `model`) or the name of another shipped encoder (encoder/shipped/NAME.pt)."""
    if spec == "default":
        return shipped(model)
    if "/" not in spec and not spec.endswith(".pt") and (SHIPPED / f"{spec}.pt").is_file():
        return SHIPPED / f"{spec}.pt"
    p = Path(spec)
    if p.is_dir():
        p = p / "encoder.pt"
    if not p.is_file():
        raise EncoderError(f"encoder checkpoint {spec} not found: train one with "
                           f"{train_command(spec)}")
    return p


def read(spec: str, model: str = DEFAULT_MODEL) -> dict:
    p = resolve(spec, model)
    try:
        blob = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a damaged file
        why = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise EncoderError(f"cannot read encoder checkpoint {p} (damaged, truncated or not a "
                           f"torch file): {why}") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise EncoderError(f"{p} is not a protospace encoder checkpoint")
    if spec == "default" and blob.get("llm", {}).get("name") != model:
        raise EncoderError(f"{p} is shipped as {model}'s default encoder but was trained for "
                           f"{blob.get('llm', {}).get('name')!r}")
    blob["path"] = str(p)
    return blob


def precision(blob: dict) -> str:
    """The precision the encoder was trained in. Files from before it was recorded were all
    trained on CPUs without fast bf16, in fp32."""
    return blob.get("precision") or "float32"


def load_state(enc: Encoder, blob: dict) -> None:
    """Load a checkpoint's trained weights into `enc`; a checkpoint that lacks any of the
    encoder's trainable weights, or holds weights it does not have, is refused."""
    state = {peft_key(k): v for k, v in blob["state"].items()}
    missing = sorted(enc.trainable_keys() - set(state) - set(STATS))
    if missing:
        raise EncoderError(f"encoder {blob['path']} lacks trained weights, e.g. {missing[0]} "
                           f"({len(missing)} missing)")
    unexpected = enc.load_trainable(state)
    if unexpected:
        raise EncoderError(f"encoder {blob['path']} holds unknown weights, e.g. {unexpected[0]}")


def load(spec: str, lm=None, device: str = "", dtype: str = ""):
    """(encoder in eval mode, decoder, m, blob) for checkpoint `spec`; lm is loaded if None,
    in the precision the encoder was trained in unless `dtype` names another (said on
    stderr, since one-pass accuracy moves with it)."""
    blob = read(spec)
    cfg = C.from_dict(EncoderConfig, blob["config"])
    if lm is None:
        lm = load_llm(blob["llm"]["name"], device, dtype, record=precision(blob),
                      what=f"encoder {blob['path']}")
        if lm.precision_note:
            print(f"note: {lm.precision_note}", file=sys.stderr)
    if lm.weights_sha256 != blob["llm"]["weights_sha256"]:
        raise EncoderError(f"encoder {blob['path']} belongs to decoder {blob['llm']['name']!r} "
                           f"(weights {blob['llm']['weights_sha256'][:12]}), not to "
                           f"{lm.name!r} ({lm.weights_sha256[:12]})")
    state = blob["state"]
    m = state.get("m")
    enc = Encoder(cfg.model, lm, state["offset"], m, train_m=cfg.m == "learned")
    load_state(enc, blob)
    enc.to(lm.device).eval()
    arr = Arrangement.from_dict(blob["arrangement"])
    return enc, Decoder.of(lm, arr), (None if m is None else m.to(lm.device)), blob
