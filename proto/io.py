"""Atomic file writes and file hashes shared by every package.

A write goes to a hidden temp file in the target's directory (`.NAME.<random>.tmp`, never
matching the target's pattern), is fsynced, then renamed over the target: a crash leaves
either the old file or the new one, never half of one. `atomic_path` does the same for writers
that want a file name rather than bytes (FAISS indexes, parquet tables).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path


def sha256_file(path: str | Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def tmp_in(path: Path) -> str:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    return tmp


def fsync_replace(tmp: str, path: Path) -> None:
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


@contextlib.contextmanager
def atomic_path(path: str | Path):
    """Yield a temp file name (str) beside `path` to write to; when the block ends normally
    the temp file is fsynced and renamed over `path`, when it raises the temp file is removed
    (and `path` left as it was). The parent directory is created if needed.

        with atomic_path(out / "e_index.faiss") as tmp:
            faiss.write_index(index, tmp)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_in(path)
    try:
        yield tmp
        fsync_replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
    return path


def atomic_write_json(path: str | Path, obj) -> Path:
    return atomic_write_bytes(path, (json.dumps(obj, indent=1, default=str) + "\n").encode())


def read_texts(texts: list[str] | None, texts_file: str | None) -> list[str]:
    """The given texts, then the non-empty lines of a UTF-8 file; ValueError (one line) when
    there are none, the file cannot be read, or a given text is blank."""
    out = list(texts or [])
    if texts_file:
        p = Path(texts_file)
        try:
            raw = p.read_bytes()
        except OSError as exc:
            raise ValueError(f"cannot read texts file {p}: {exc.strerror or exc}") from None
        try:
            content = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"texts file {p} is not UTF-8 (byte {exc.start})") from None
        lines = [line.rstrip("\n") for line in content.splitlines() if line.strip()]
        if not lines:
            raise ValueError(f"texts file {p} holds no text")
        out += lines
    if not out:
        raise ValueError("no text given: use --text \"...\" or --texts-file FILE")
    for i, t in enumerate(out):
        if not t.strip():
            raise ValueError(f"text {i} is empty")
    return out
