"""The texts of a corpus, enumerated deterministically from source configs.

Sources (`name` of a SourceConfig):
  britannica, plays  offline Gutenberg prose / plays (proto.sources)
  random-words       uniformly sampled top-100k English words (the paper's unnatural control)
  files              local .txt (one text per line, paragraph or file: `txt_split`), .jsonl
                     (`field` of each record) and .parquet (column `field`); globs allowed
  hub                a Hugging Face dataset streamed with datasets.load_dataset(..., streaming=True)
                     (needs a network or a cache), first `max_records` records, key `field`
  generated          the model's own continuations: `count` contexts of N tokens are cut from
                     `context_source` (any source above but random-words, with its fields), and
                     the model samples `continuations` continuations of N tokens from each
                     (multinomial, T=1); the continuations are the texts, and the ones of one
                     context share its context_id, so same-context solutions exist (paper Sec. 4)

For each requested length N, a source yields `count` texts of exactly N tokens: windows of N
tokens cut at multiples of N from each document's token ids, drawn with an RNG seeded by
(seed, source, N), then kept in document order. Every text gets
  text_id     stable hash of (source label, token ids)  -> duplicates are dropped
  context_id  `label:document:block`, the block of `context_tokens` tokens the window starts in,
              so texts cut from the same stretch of a document share a context (paper Sec. 4)
"""
from __future__ import annotations

import dataclasses
import glob
import hashlib
import itertools
import json
import random
from pathlib import Path
from typing import Callable, Iterator

import pyarrow.parquet as pq

from proto.sources import SourceError, gutenberg_documents, random_word_text, text_id

SOURCE_NAMES = ("britannica", "plays", "random-words", "files", "hub", "generated")


@dataclasses.dataclass
class SourceConfig:
    name: str = "random-words"      # britannica | plays | random-words | files | hub
    count: int = 16                 # texts per length
    lengths: list[int] = dataclasses.field(default_factory=lambda: [16])  # token lengths N
    label: str = ""                 # value of the `source` column ('' = name, or hub:DATASET)
    paths: list[str] = dataclasses.field(default_factory=list)  # files: paths or globs
    field: str = "text"             # files (.jsonl/.parquet) and hub: the text key
    txt_split: str = "line"         # files .txt: line | paragraph | file
    dataset: str = ""               # hub: dataset id
    subset: str = ""                # hub: config name
    split: str = "train"            # hub: split
    max_records: int = 2000         # hub: records read from the stream
    context_tokens: int = 512       # context_id block size in tokens
    context_source: str = "britannica"  # generated: where the contexts come from
    continuations: int = 4          # generated: sampled continuations per context

    def __post_init__(self):
        if self.name not in SOURCE_NAMES:
            raise ValueError(f"unknown source {self.name!r}; choose from {list(SOURCE_NAMES)}")
        if self.count < 0:
            raise ValueError(f"source {self.name}: count must be >= 0")
        if not self.lengths or min(self.lengths) < 1:
            raise ValueError(f"source {self.name}: lengths must be positive token counts")
        if self.txt_split not in ("line", "paragraph", "file"):
            raise ValueError(f"source {self.name}: txt_split must be line, paragraph or file")
        if self.name == "files" and not self.paths:
            raise ValueError("source files needs paths: [file.txt, dir/*.jsonl, ...]")
        if self.name == "hub" and not self.dataset:
            raise ValueError("source hub needs dataset: ORG/NAME")
        if self.context_tokens < 1:
            raise ValueError("context_tokens must be >= 1")
        if self.name == "generated":
            if self.context_source not in SOURCE_NAMES or self.context_source in (
                    "generated", "random-words"):
                raise ValueError("source generated: context_source must be britannica, plays, "
                                 "files or hub")
            if self.continuations < 1:
                raise ValueError("source generated: continuations must be >= 1")

    @property
    def source_label(self) -> str:
        if self.label:
            return self.label
        return f"hub:{self.dataset}" if self.name == "hub" else self.name


@dataclasses.dataclass
class Text:
    text_id: str
    source: str
    context_id: str
    token_ids: list[int]
    text: str


# ---------------------------------------------------------------- documents

def _decode_utf8(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise SourceError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SourceError(f"{path} is not UTF-8 (invalid byte at offset {exc.start})") from None


def _expand(paths: list[str]) -> list[Path]:
    out = []
    for p in paths:
        hits = sorted(glob.glob(p)) if any(c in p for c in "*?[") else [p]
        if not hits:
            raise SourceError(f"files source: no file matches {p}")
        out += [Path(h) for h in hits]
    for p in out:
        if not p.is_file():
            raise SourceError(f"files source: {p} is not a file")
    return out


def _file_documents(src: SourceConfig) -> Iterator[tuple[str, str]]:
    for path in _expand(src.paths):
        suffix = path.suffix.lower()
        if suffix == ".parquet":
            try:
                col = pq.read_table(path, columns=[src.field]).column(src.field).to_pylist()
            except Exception as exc:
                why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise SourceError(f"cannot read column {src.field!r} of {path}: {why}") from None
            for k, t in enumerate(col):
                yield f"{path.name}:{k}", t if isinstance(t, str) else ""
        elif suffix == ".jsonl":
            for k, line in enumerate(_decode_utf8(path).splitlines()):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except ValueError:
                    raise SourceError(f"{path}:{k + 1} is not valid JSON") from None
                if not isinstance(rec, dict) or src.field not in rec:
                    raise SourceError(f"{path}:{k + 1} has no key {src.field!r}")
                t = rec[src.field]
                yield f"{path.name}:{k}", t if isinstance(t, str) else ""
        elif suffix in (".txt", ".text", ".md", ""):
            content = _decode_utf8(path)
            if src.txt_split == "file":
                parts = [content]
            elif src.txt_split == "paragraph":
                parts = [" ".join(p.split()) for p in content.replace("\r\n", "\n").split("\n\n")]
            else:
                parts = content.splitlines()
            for k, t in enumerate(parts):
                yield f"{path.name}:{k}", t
        else:
            raise SourceError(f"files source: {path} is not .txt, .jsonl or .parquet")


def check_sources(sources: list[SourceConfig]) -> None:
    """Fail fast (before a model loads) on missing, unreadable or non-UTF-8 local files."""
    for src in sources:
        if src.name != "files" and not (src.name == "generated"
                                         and src.context_source == "files"):
            continue
        for path in _expand(src.paths):
            suffix = path.suffix.lower()
            if suffix == ".parquet":
                try:
                    names = pq.read_schema(path).names
                except Exception as exc:
                    why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                    raise SourceError(f"cannot read parquet file {path}: {why}") from None
                if src.field not in names:
                    raise SourceError(f"{path} has no column {src.field!r} (columns: {names})")
            elif suffix in (".jsonl", ".txt", ".text", ".md", ""):
                _decode_utf8(path)
            else:
                raise SourceError(f"files source: {path} is not .txt, .jsonl or .parquet")


def _hub_documents(src: SourceConfig) -> Iterator[tuple[str, str]]:
    try:
        import datasets  # lazy: datasets costs ~1 s and only readers of whole corpora need it
        ds = datasets.load_dataset(src.dataset, src.subset or None, split=src.split,
                                   streaming=True)
        for k, rec in enumerate(itertools.islice(ds, src.max_records)):
            if src.field not in rec:
                raise SourceError(f"hub dataset {src.dataset}: records have no key "
                                  f"{src.field!r} (keys: {sorted(rec)})")
            t = rec[src.field]
            yield f"{k}", t if isinstance(t, str) else ""
    except SourceError:
        raise
    except Exception as exc:  # network, auth, unknown dataset: one line for the user
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SourceError(f"cannot stream hub dataset {src.dataset!r}: {why}") from None


def documents(src: SourceConfig) -> Iterator[tuple[str, str]]:
    if src.name in ("britannica", "plays"):
        yield from gutenberg_documents(src.name)
    elif src.name == "files":
        yield from _file_documents(src)
    elif src.name == "hub":
        yield from _hub_documents(src)
    else:
        raise SourceError(f"source {src.name} has no documents")


# ---------------------------------------------------------------- texts

# generate(contexts, k, n, seed) -> for each context, k sampled continuations of n token ids
Generate = Callable[[list[list[int]], int, int, int], list[list[list[int]]]]


def _generated_texts(src: SourceConfig, tokenize, detokenize, seed: int, stats: dict,
                     generate: Generate | None) -> list[Text]:
    if generate is None:
        raise SourceError("source generated needs the model (only data_gen.build can make it)")
    label = src.source_label
    ctx_src = dataclasses.replace(src, name=src.context_source, label="")
    contexts = source_texts(ctx_src, tokenize, detokenize, seed, stats)
    out: list[Text] = []
    for n in src.lengths:
        ctx = [c for c in contexts if len(c.token_ids) == n]
        conts = generate([c.token_ids for c in ctx], src.continuations, n,
                         int.from_bytes(hashlib.sha256(f"{seed}|{label}|{n}".encode())
                                        .digest()[:4], "little"))
        for c, ks in zip(ctx, conts):
            for ids in ks:
                ids = list(ids)[:n]
                out.append(Text(text_id(label, ids), label, f"{label}:{c.text_id}", ids,
                                detokenize(ids)))
    return out


def source_texts(src: SourceConfig, tokenize: Callable[[str], list[int]],
                 detokenize: Callable[[list[int]], str], seed: int, stats: dict,
                 generate: Generate | None = None) -> list[Text]:
    label = src.source_label
    out: list[Text] = []
    if src.name == "generated":
        return _generated_texts(src, tokenize, detokenize, seed, stats, generate)
    if src.name == "random-words":
        for n in src.lengths:
            rng = random.Random(f"{seed}|{label}|{n}")
            for i in range(src.count):
                ids: list[int] = []
                while len(ids) < n:
                    ids = tokenize(random_word_text(rng, n))
                ids = ids[:n]
                out.append(Text(text_id(label, ids), label, f"{label}:{n}:{i}", ids,
                                detokenize(ids)))
        return out
    docs: list[tuple[str, list[int]]] = []
    for name, text in documents(src):
        if not text or not text.strip():
            stats["empty"] = stats.get("empty", 0) + 1
            continue
        docs.append((name, tokenize(text)))
    if not docs:
        raise SourceError(f"source {label}: no non-empty texts")
    for n in src.lengths:
        cands = [(d, s) for d, (_, ids) in enumerate(docs)
                 for s in range(0, len(ids) - n + 1, n)]
        rng = random.Random(f"{seed}|{label}|{n}")
        pick = sorted(rng.sample(cands, min(src.count, len(cands))))
        if len(pick) < src.count:
            stats.setdefault("shortfall", {})[f"{label}/N={n}"] = src.count - len(pick)
        for d, s in pick:
            name, ids = docs[d]
            w = ids[s: s + n]
            out.append(Text(text_id(label, w), label,
                            f"{label}:{name}:{s // src.context_tokens}", w, detokenize(w)))
    return out


def corpus_texts(sources: list[SourceConfig], tokenize, detokenize, seed: int,
                 generate: Generate | None = None) -> tuple[list[Text], dict]:
    """All texts in a fixed order (sources, then lengths, then document order), deduplicated."""
    stats: dict = {}
    seen: set[str] = set()
    out: list[Text] = []
    for src in sources:
        for t in source_texts(src, tokenize, detokenize, seed, stats, generate):
            if t.text_id in seen:
                stats["duplicates"] = stats.get("duplicates", 0) + 1
                continue
            seen.add(t.text_id)
            out.append(t)
    return out, stats
