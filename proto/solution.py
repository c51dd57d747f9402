"""Solution files: proto-tokens of one or more texts in one safetensors file.

Tensors: `e` [R, d] and, when the arrangement uses it, `m` [R, d] (float32).
Metadata key `protospace` holds JSON: format, model identity, arrangement (name + prefix ids),
recipe, and per row: text, token_ids, accuracy, c_tokens, steps, seconds.
Written atomically (temp file + rename) so a crash never leaves half a file.

A chunked file holds several e per text, one row per chunk of a text's tokens: each row adds
`text_id` (the text's index in the meta's `texts`), `chunk` (its index within the text) and
`span` ([start, end) token offsets into the text), and its token_ids are the chunk's. The
meta's `texts` lists the whole texts ({text, token_ids}); a text is rebuilt by concatenating
its chunks in chunk order. Files without `text_id` are one e per text.
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
    if is_chunked(meta):
        check_chunks(p, meta)
    return e, m, meta


def chunk_spans(n: int, size: int) -> list[tuple[int, int]]:
    """[start, end) offsets of consecutive chunks of `size` tokens over n (the last may be
    shorter); size 0 = one span over all n."""
    if size <= 0:
        return [(0, n)]
    return [(s, min(s + size, n)) for s in range(0, n, size)]


def chunk_rows(token_lists: list[list[int]], size: int) -> list[dict]:
    """One dict per chunk of every text, texts in order: text_id, chunk, span, token_ids."""
    return [{"text_id": i, "chunk": k, "span": [s, t], "token_ids": ids[s:t]}
            for i, ids in enumerate(token_lists)
            for k, (s, t) in enumerate(chunk_spans(len(ids), size))]


def is_chunked(meta: dict) -> bool:
    return any("text_id" in r for r in meta.get("rows", []))


def by_text(rows: list[dict], n_texts: int) -> list[list[int]]:
    """For each of n_texts whole texts, the indices of its chunk rows (dicts with text_id and
    chunk: a file's rows or chunk_rows') in chunk order."""
    out: list[list[int]] = [[] for _ in range(n_texts)]
    for i, r in enumerate(rows):
        out[r["text_id"]].append(i)
    return [sorted(ix, key=lambda i: rows[i]["chunk"]) for ix in out]


def text_rows(meta: dict) -> list[list[int]]:
    """For each whole text of a chunked file, the indices of its rows in chunk order."""
    return by_text(meta["rows"], len(meta["texts"]))


def spans_tile(spans: list, widths: list[int], n: int) -> bool:
    """Do spans [start, end), in order, cover tokens 0..n with no gap or overlap, each as wide
    as its row's tokens? (Solution files and chunked corpus rows rebuild texts by this rule.)"""
    ends = [0] + [s[1] for s in spans]
    return (bool(spans) and ends[-1] == n
            and all(s[0] == a and s[1] - s[0] == w for s, a, w in zip(spans, ends, widths)))


def check_chunks(p: Path, meta: dict) -> None:
    """A chunked file's rows must tile each of its texts exactly, or a rebuilt text would
    silently lose or repeat tokens."""
    texts, rows = meta.get("texts"), meta["rows"]
    if not isinstance(texts, list) or not texts:
        raise SolutionError(f"{p}: rows carry text_id but the metadata lists no texts")
    for i, r in enumerate(rows):
        if not (isinstance(r.get("text_id"), int) and 0 <= r["text_id"] < len(texts)):
            raise SolutionError(f"{p}: row {i} has text_id {r.get('text_id')!r}, not one of "
                                f"the {len(texts)} texts")
    for t, ix in enumerate(text_rows(meta)):
        got = [tok for i in ix for tok in rows[i]["token_ids"]]
        spans = [rows[i]["span"] for i in ix]
        widths = [len(rows[i]["token_ids"]) for i in ix]
        if got != texts[t]["token_ids"] or not spans_tile(spans, widths, len(got)):
            raise SolutionError(f"{p}: the chunks of text {t} do not tile its tokens")
