"""What an encoder trained on, drawn again from its checkpoint rather than stored in it.

Every training example is a pure function of the data config and its stream position
(encoder.data), and a checkpoint holds its config and step, so the texts behind steps 1..step
are the first step x global_batch positions of the split its config builds. Counting tokens
over them gives `encoder.evaluate` its frequency buckets for any encoder, stream-trained ones
included (they have no corpus to count). A run started from another checkpoint (init_from)
trained on that one's texts too, so they are counted as well.
"""
from __future__ import annotations

from collections import Counter

from proto import config as C

from . import checkpoint as ckpt
from .config import EncoderConfig
from .core import EncoderError, prepare

# training positions drawn per run; a longer run is sampled at every k-th position (~7 s for
# 100 000 SmolLM2 stream texts, about the longest shipped run)
REPLAY_LIMIT = 100_000


def lineage(blob: dict) -> tuple[list[dict], str]:
    """The checkpoint, then the ones it was started from (init_from), and a note naming an
    init_from that cannot be read ('' when all can)."""
    out, paths = [blob], {blob["path"]}
    while spec := out[-1]["config"].get("init_from"):
        try:
            parent = ckpt.read(spec)
        except EncoderError:
            return out, (f"init_from {spec} cannot be read, so the texts it trained on are "
                         "not counted")
        if parent["path"] in paths:
            break
        out.append(parent)
        paths.add(parent["path"])
    return out, ""


def replay(blob: dict, lm, limit: int = REPLAY_LIMIT) -> tuple[dict[str, list[int]], int, int]:
    """({text id: token ids} of the texts the checkpoint's own steps drew, training positions,
    stride): every position when there are at most `limit`, else every stride-th."""
    cfg = C.from_dict(EncoderConfig, blob["config"])
    split = prepare(cfg, lm=lm).split
    g = cfg.train.global_batch
    total = int(blob.get("step") or 0) * g
    stride = max(1, -(-total // limit))
    texts = {}
    for p in range(0, total, stride):
        x = split.example(p, p // g)
        texts.setdefault(x.text_id, x.token_ids)
    return texts, total, stride


def training_counts(blob: dict, lm, limit: int = REPLAY_LIMIT) -> tuple[Counter | None, dict]:
    """(token -> count over the distinct texts the encoder trained on, what was counted); the
    counts are None, with the reason, when the training texts cannot be drawn again (a
    training corpus that is gone, say). Sampled runs have their counts scaled by the stride."""
    runs, note = lineage(blob)
    counts, seen, info = Counter(), set(), {"runs": [], "note": note}
    for run in runs:
        try:
            texts, total, stride = replay(run, lm, limit)
        except (EncoderError, C.ConfigError) as exc:
            return None, {"omitted": f"the training texts of {run['path']} cannot be drawn "
                                     f"again: {exc}"}
        for tid, toks in texts.items():
            if tid not in seen:
                seen.add(tid)
                counts.update({t: c * stride for t, c in Counter(toks).items()})
        info["runs"].append({"checkpoint": run["path"], "positions": total, "stride": stride,
                             "texts": len(texts)})
    info["texts"] = len(seen)
    info["estimated"] = any(r["stride"] > 1 for r in info["runs"])
    return counts, info
