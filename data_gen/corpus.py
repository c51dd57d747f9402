"""Corpus directories: text -> proto-token `e` solutions with one shared `m`.

  CORPUS/
    manifest.json              format, model identity, arrangement, recipe, d_model, config,
                               shard lists (rows, sha256, bytes), status complete | partial
    build.json                 written when a build starts: what this directory is being built
                               with (model identity + content config); a build with a different
                               model or config is refused
    config.yaml                the resolved build config
    m.safetensors              the shared m (tensor `m` [d]) + metadata
    shards/chunk-NNNNN.parquet one row per (text, restart), see shard_schema; with text_chunk > 0
                               one per (chunk of a text, restart), plus parent columns
    shards/chunk-NNNNN.json    sidecar {rows, sha256, bytes}, written after its parquet
    pairs/chunk-NNNNN.parquet  connectivity checks between solved restarts of one text
    pairs/chunk-NNNNN.json     sidecar

Every file is written to a temp file in its own directory and renamed into place (temp names
never end in .parquet, so `shards/*.parquet` globs never see half a file). A shard counts only
when its sidecar exists and matches it; a parquet without a sidecar is treated as absent and
rewritten, a parquet that does not match its sidecar is moved aside to `*.corrupt`.

Readers: `read_corpus(path)` -> datasets.Dataset of all shards; plain
`datasets.load_dataset("parquet", data_files="CORPUS/shards/*.parquet", split="train")` works too.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from safetensors import safe_open
from safetensors.torch import save_file

from proto.config import producing_config
from proto.io import atomic_path, atomic_write_json, sha256_file

FORMAT = "protospace.corpus/1"
SHARDS, PAIRS = "shards", "pairs"


class CorpusError(ValueError):
    """A corpus problem that should end a command with one clear line."""


# The parent columns of a chunked corpus's rows: the whole text's text_id, the chunk's index in
# it, its [start, end) token offsets, and the whole text's length (so tiling is checkable).
CHUNK_FIELDS = [
    ("parent_id", pa.string()),
    ("chunk", pa.int32()),
    ("span", pa.list_(pa.int32(), 2)),
    ("parent_n_tokens", pa.int32()),
]


def shard_schema(d_model: int, chunked: bool = False) -> pa.Schema:
    """A shard's columns; chunked (text_chunk > 0): each row is a chunk of a text, fitted as a
    short text of its own, and names its text (the parent) after the usual columns. A corpus
    without chunks keeps the original schema, so its old and new shards read as one."""
    return pa.schema([
        ("text_id", pa.string()),
        ("source", pa.string()),
        ("context_id", pa.string()),
        ("restart", pa.int32()),
        ("text", pa.string()),
        ("token_ids", pa.list_(pa.int32())),
        ("n_tokens", pa.int32()),
        ("e", pa.list_(pa.float32(), d_model)),   # fixed-size list: datasets List(float32, d)
        ("accuracy", pa.float32()),
        ("c_tokens", pa.int32()),
        ("h_lm", pa.float32()),
        ("loss", pa.float32()),
        ("steps", pa.int32()),
        ("seconds", pa.float32()),
        ("solved", pa.bool_()),
        ("status", pa.string()),
    ] + (CHUNK_FIELDS if chunked else []))


def solved_counts(table: pa.Table) -> dict:
    """Texts and solved texts among rows with text_id and solved: a row's text is solved when
    one of its restarts is. Rows of chunks (a parent_id column) count whole texts, solved when
    all their chunks are, and add text_chunks and text_chunks_solved."""
    tids = table.column("text_id").to_pylist()
    done = {t for t, s in zip(tids, table.column("solved").to_pylist()) if s}
    if "parent_id" not in table.column_names:
        return {"texts": len(set(tids)), "solved_texts": len(done)}
    chunks: dict[str, set] = {}
    for t, p in zip(tids, table.column("parent_id").to_pylist()):
        chunks.setdefault(p, set()).add(t)
    return {"texts": len(chunks), "solved_texts": sum(c <= done for c in chunks.values()),
            "text_chunks": len(set(tids)), "text_chunks_solved": len(done)}


PAIR_SCHEMA = pa.schema([
    ("text_id", pa.string()),
    ("restart_a", pa.int32()),
    ("restart_b", pa.int32()),
    ("cosine_distance", pa.float32()),
    ("linear_min_acc", pa.float32()),
    ("linear_mean_acc", pa.float32()),
    ("bezier_min_acc", pa.float32()),
    ("bezier_mean_acc", pa.float32()),
    ("length_ratio", pa.float32()),
])


# ---------------------------------------------------------------- atomic files
# (the writers themselves live in proto.io)

def remove_stale_temps(directory: Path, stem: str) -> None:
    """Delete temp files left by a killed write of `stem` (only the caller's own chunks)."""
    for p in directory.glob(f".{stem}.*.tmp"):
        p.unlink(missing_ok=True)


# ---------------------------------------------------------------- shards

def chunk_name(i: int) -> str:
    return f"chunk-{i:05d}"


def shard_paths(root: str | Path, kind: str, i: int) -> tuple[Path, Path]:
    base = Path(root) / kind / chunk_name(i)
    return base.with_suffix(".parquet"), base.with_suffix(".json")


def write_shard(root: str | Path, kind: str, i: int, table: pa.Table) -> dict:
    """Write a parquet shard, then its sidecar; returns the sidecar dict.

    An empty table (a chunk with no restart pairs) gets a sidecar only (path None): the
    datasets parquet loader fails on zero-row files, so none are written.
    """
    pq_path, side_path = shard_paths(root, kind, i)
    pq_path.parent.mkdir(parents=True, exist_ok=True)
    if table.num_rows == 0:
        side = {"path": None, "chunk": i, "rows": 0, "sha256": None, "bytes": 0}
        atomic_write_json(side_path, side)
        return side
    with atomic_path(pq_path) as tmp:
        pq.write_table(table, tmp)
        sha = sha256_file(tmp)
        size = os.path.getsize(tmp)
    side = {"path": f"{kind}/{pq_path.name}", "chunk": i, "rows": table.num_rows,
            "sha256": sha, "bytes": size}
    atomic_write_json(side_path, side)
    return side


def check_shard(root: str | Path, kind: str, i: int, deep: bool = True) -> tuple[str, dict | None]:
    """State of one shard: ('ok', sidecar) | ('absent', None) | ('corrupt', why).

    absent: no parquet, or a parquet without sidecar (a write that was cut off before its
    sidecar). corrupt: a sidecar whose parquet is missing, of another size or hash, or unreadable.
    deep=False skips the hash and the parquet read (size check only).
    """
    pq_path, side_path = shard_paths(root, kind, i)
    if not side_path.exists():
        return "absent", None
    try:
        side = json.loads(side_path.read_text())
        rows, sha, size = int(side["rows"]), side["sha256"], int(side["bytes"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return "corrupt", {"why": f"unreadable sidecar {side_path.name}: {exc}"}
    if side.get("path") is None and rows == 0:
        return "ok", side  # an empty shard: sidecar only
    if not pq_path.exists():
        return "corrupt", {"why": f"{pq_path.name} missing (sidecar says {rows} rows)"}
    actual = pq_path.stat().st_size
    if actual != size:
        return "corrupt", {"why": f"{pq_path.name} has {actual} bytes, sidecar says {size}"}
    if deep:
        if sha256_file(pq_path) != sha:
            return "corrupt", {"why": f"{pq_path.name} sha256 differs from its sidecar"}
        try:
            n = pq.ParquetFile(pq_path).metadata.num_rows
        except Exception as exc:  # pyarrow raises several types for damaged files
            return "corrupt", {"why": f"{pq_path.name} unreadable: {exc}"}
        if n != rows:
            return "corrupt", {"why": f"{pq_path.name} has {n} rows, sidecar says {rows}"}
    return "ok", side


def move_aside(root: str | Path, kind: str, i: int) -> list[str]:
    """Rename a bad shard and its sidecar to *.corrupt (never delete: it may be evidence)."""
    moved = []
    for p in shard_paths(root, kind, i):
        if p.exists():
            dst = p.with_name(p.name + ".corrupt")
            k = 1
            while dst.exists():
                dst = p.with_name(f"{p.name}.corrupt.{k}")
                k += 1
            os.replace(p, dst)
            moved.append(dst.name)
    return moved


def list_shards(root: str | Path, kind: str = SHARDS) -> list[dict]:
    """Sidecars of the shards present (sorted by chunk), without checking hashes."""
    out = []
    for side in sorted((Path(root) / kind).glob("chunk-*.json")):
        try:
            out.append(json.loads(side.read_text()))
        except (OSError, ValueError):
            continue
    return sorted(out, key=lambda s: s.get("chunk", 0))


# ---------------------------------------------------------------- m

def save_m(root: str | Path, m, meta: dict) -> None:
    path = Path(root) / "m.safetensors"
    with atomic_path(path) as tmp:
        save_file({"m": m.detach().float().cpu().contiguous()}, tmp,
                  metadata={"protospace": json.dumps(meta, default=str)})


def load_m(root: str | Path):
    """(m [d] float32 tensor, metadata dict) of a corpus."""
    path = Path(root) / "m.safetensors"
    if not path.exists():
        raise CorpusError(f"{path} not found")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get("protospace", "{}"))
            return f.get_tensor("m"), meta
    except Exception as exc:
        raise CorpusError(f"{path} is not a readable m file: {exc}") from None


# ---------------------------------------------------------------- readers

def build_command(root: str | Path) -> str:
    """The command that builds (or finishes) corpus `root`."""
    cfg = producing_config("data_gen", root)
    if cfg is not None:
        return f"python -m data_gen.build --config {cfg}"
    return f"python -m data_gen.build --config configs/data_gen/default.yaml out={root}"


def read_manifest(root: str | Path) -> dict:
    p = Path(root) / "manifest.json"
    if not p.exists():
        what = ("its build never reached the end" if (Path(root) / "build.json").exists()
                else "no corpus is there yet")
        raise CorpusError(f"{root} has no manifest.json ({what}): build it with "
                          f"{build_command(root)}")
    try:
        man = json.loads(p.read_text())
    except (OSError, ValueError) as exc:
        raise CorpusError(f"{p} is unreadable: {exc}") from None
    if man.get("format") != FORMAT:
        raise CorpusError(f"{p}: format {man.get('format')!r} is not {FORMAT}")
    return man


def _files(root: Path, kind: str, require_complete: bool) -> list[str]:
    if (root / "manifest.json").exists():
        man = read_manifest(root)
        if require_complete and man.get("status") != "complete":
            raise CorpusError(f"corpus {root} is {man.get('status')}: rerun its build to "
                              f"finish it, or pass require_complete=False")
        entries = man[kind]
    else:
        if require_complete:
            read_manifest(root)  # raises the 'no manifest' error
        entries = list_shards(root, kind)
    return [str(root / s["path"]) for s in entries if s.get("path")]


def read_corpus(path: str | Path, require_complete: bool = True, kind: str = SHARDS,
                cache_dir: str | None = None):
    """The corpus rows (or pairs with kind='pairs') as a datasets.Dataset.

    Shards come from the manifest (or, with require_complete=False and no manifest yet, from
    the sidecars of the shards written so far). cache_dir: datasets' Arrow cache.
    """
    import datasets  # lazy: datasets costs ~1 s and only readers of whole corpora need it
    root = Path(path)
    files = _files(root, kind, require_complete)
    if not files:
        raise CorpusError(f"corpus {root} has no {kind} shards")
    missing = [f for f in files if not Path(f).exists()]
    if missing:
        raise CorpusError(f"corpus {root}: {len(missing)} shard(s) missing, e.g. {missing[0]} "
                          f"(run python -m data_gen.verify {root})")
    return datasets.load_dataset("parquet", data_files=files, split="train", cache_dir=cache_dir)


def read_pairs(path: str | Path, require_complete: bool = True, cache_dir: str | None = None):
    return read_corpus(path, require_complete, kind=PAIRS, cache_dir=cache_dir)


def read_shard(path: str | Path, columns: list[str] | None = None) -> pa.Table:
    """One shard as a pyarrow table; CorpusError (naming data_gen.verify) if it is damaged."""
    try:
        return pq.read_table(path, columns=columns)
    except (pa.ArrowException, OSError) as exc:
        root = Path(path).parents[1]
        raise CorpusError(f"shard {path} is unreadable ({str(exc).splitlines()[0][:120]}): "
                          f"python -m data_gen.verify {root} lists the damage, rerunning "
                          f"the build redoes it") from None


def read_table(path: str | Path, kind: str = SHARDS, columns: list[str] | None = None,
               require_complete: bool = False) -> pa.Table:
    """All shards of `kind` as one pyarrow table (no datasets cache: quick looks, tests)."""
    files = _files(Path(path), kind, require_complete)
    tables = [read_shard(f, columns) for f in files if Path(f).exists()]
    if not tables:
        return pa.table({c: [] for c in (columns or [])}) if columns else pa.table({})
    return pa.concat_tables(tables)
