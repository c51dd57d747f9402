"""Solution files: proto-tokens of one or more texts in one safetensors file.

Tensors: `e` [R, d] and, when the arrangement uses it, `m` [R, d] (float32).
Metadata key `protospace` holds JSON: format, model identity, arrangement (name + prefix ids),
recipe, and per row: text, token_ids, accuracy, c_tokens, steps, seconds.
Written atomically (temp file + rename) so a crash never leaves half a file.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save as to_bytes

from .io import atomic_write_bytes

FORMAT = "protospace.solution/1"


class SolutionError(ValueError):
    pass


def save(path: str | Path, e: torch.Tensor, m: torch.Tensor | None, meta: dict) -> Path:
    tensors = {"e": e.detach().float().cpu().contiguous()}
    if m is not None:
        tensors["m"] = m.detach().float().cpu().contiguous()
    meta = {"format": FORMAT, **meta}
    return atomic_write_bytes(path, to_bytes(tensors, metadata={"protospace": json.dumps(meta)}))


def load(path: str | Path) -> tuple[torch.Tensor, torch.Tensor | None, dict]:
    p = Path(path)
    if not p.is_file():
        raise SolutionError(f"solution file not found: {p} (write one with python -m proto.fit "
                            f"--texts-file F --out {p}, or python -m encoder.encode "
                            f"--texts-file F --out {p})")
    try:
        with safe_open(str(p), framework="pt") as f:
            raw = (f.metadata() or {}).get("protospace")
            keys = set(f.keys())
            e = f.get_tensor("e") if "e" in keys else None
            m = f.get_tensor("m") if "m" in keys else None
    except Exception as exc:  # safetensors raises several types for corrupt headers
        raise SolutionError(f"{p} is not a readable safetensors solution file "
                            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
                            ) from None
    if raw is None or e is None:
        raise SolutionError(f"{p} is a safetensors file but not a protospace solution")
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError:
        raise SolutionError(f"{p}: solution metadata is not valid JSON") from None
    if meta.get("format") != FORMAT:
        raise SolutionError(f"{p}: unsupported solution format {meta.get('format')!r}")
    if e.dim() != 2 or len(meta.get("rows", [])) != e.shape[0]:
        raise SolutionError(f"{p}: e has shape {tuple(e.shape)} but metadata lists "
                            f"{len(meta.get('rows', []))} rows")
    if not torch.isfinite(e).all() or (m is not None and not torch.isfinite(m).all()):
        raise SolutionError(f"{p}: solution holds non-finite values")
    return e, m, meta
