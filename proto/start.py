"""Learned starting points for fitting: one (e0, m0) pair per model, written by `proto.meta`.

A start file is a torch file {"e": [d], "m": [d], "model": name, "weights_sha256": ...,
"d_model": d, "config": {...}}. `Recipe.start` names one: '' (the origin: the plain N(0, std)
init), 'learned' (the start shipped in proto/starts/ for the fitted model's exact weights, or
the origin when none is shipped), or a path.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import torch

PACKAGED = Path(__file__).resolve().parent / "starts"


def save_start(path: str | Path, e0: torch.Tensor, m0: torch.Tensor, lm, arrangement: str = "e_m",
               prefix: str = "sink", config: dict | None = None):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"e": e0.detach().float().cpu().reshape(-1).clone(),
                "m": m0.detach().float().cpu().reshape(-1).clone(),
                "model": lm.name, "weights_sha256": lm.weights_sha256, "d_model": lm.d_model,
                "arrangement": arrangement, "prefix": prefix, "config": config or {}}, tmp)
    tmp.replace(path)  # a crash mid-write leaves the previous start intact


def _unreadable(path: Path, exc: Exception) -> str:
    """Why torch.load failed, in words: its exception types (EOFError, UnpicklingError,
    RuntimeError) say nothing about the file."""
    if path.stat().st_size == 0:
        return "the file is empty"
    why = (str(exc).splitlines() or [""])[0][:100] or type(exc).__name__
    return f"not a whole torch file: truncated, or another kind of file ({why})"


def _read(path: Path) -> dict:
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file
        raise ValueError(f"cannot read start file {path}: {_unreadable(path, exc)}") from None
    if not isinstance(data, dict) or not {"e", "m", "weights_sha256"} <= set(data):
        raise ValueError(f"{path} is not a start file (written by python -m proto.meta)")
    return data


def _packaged(lm) -> tuple[Path, dict] | None:
    for p in sorted(PACKAGED.glob("*.pt")):
        data = _read(p)
        if data["weights_sha256"] == lm.weights_sha256:
            return p, data
    return None


def packaged_start(lm) -> Path | None:
    """The shipped start learned on exactly these weights, if any."""
    found = _packaged(lm)
    return found[0] if found else None


def load_start(spec: str, lm, arrangement: str = "e_m", prefix: str = "sink"
               ) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(e0, m0) for Recipe.start `spec`, model `lm` and the recipe's arrangement and prefix, or
    None for the origin. A start only means something for the input it was learned with."""
    if not spec:
        return None
    if spec == "learned":
        found = _packaged(lm)
        if found is not None:
            path, data = found
            if (data.get("arrangement"), data.get("prefix")) != (arrangement, prefix):
                warnings.warn(f"the learned start shipped for {lm.name} is for arrangement "
                              f"{data.get('arrangement')!r} with prefix {data.get('prefix')!r}, "
                              f"not {arrangement!r} / {prefix!r}: starting at the origin",
                              stacklevel=3)
                return None
        else:
            warnings.warn(f"no learned start is shipped for {lm.name}'s weights: starting at the "
                          f"origin (learn one with python -m proto.meta model={lm.name})",
                          stacklevel=3)
            return None
    else:
        path = Path(spec)
        if not path.is_file():
            raise ValueError(f"start file {spec} not found (learn one with python -m proto.meta "
                             f"--config configs/proto/meta.yaml out={spec})")
        data = _read(path)
    if data["weights_sha256"] != lm.weights_sha256:
        raise ValueError(f"start file {path} was learned on other weights ({data.get('model')}), "
                         f"not on {lm.name}'s")
    if (data.get("arrangement"), data.get("prefix")) != (arrangement, prefix):
        raise ValueError(f"start file {path} was learned for arrangement "
                         f"{data.get('arrangement')!r} with prefix {data.get('prefix')!r}, "
                         f"not {arrangement!r} / {prefix!r}")
    e0, m0 = data["e"].float(), data["m"].float()
    if e0.shape != (lm.d_model,) or m0.shape != (lm.d_model,):
        raise ValueError(f"start file {path} holds vectors of shape {tuple(e0.shape)}, "
                         f"the model needs ({lm.d_model},)")
    if not (torch.isfinite(e0).all() and torch.isfinite(m0).all()):
        raise ValueError(f"start file {path} holds non-finite values")
    return e0, m0
