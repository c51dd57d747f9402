"""An endless stream of training texts that does not repeat, each a pure function of
(seed, position): the same position gives the same text on any rank, in any run.

Kinds of text, mixed by weight (`StreamConfig`):
  prose          a window at any token offset of the offline prose (Britannica and the plays,
                 ~800 k tokens, so ~800 k distinct windows per length, not ~90 k cut ones)
  tokens         tokens drawn independently at the prose's unigram frequencies (p ~ count^power,
                 plus `token_smoothing` for every vocabulary token): never a real sentence, and
                 never the same sequence twice
  words          random English words (wordfreq top 100 k), cut to the length
  continuations  the model's own sampled continuations of prose contexts, drawn once into a
                 pool at start (`continuations_pool` contexts per length, 4 samples each)

Held-out prose: the prose is cut into contexts of `context_tokens` tokens with the same ids as
a corpus's (`label:document:block`), and a caller's rule (`is_heldout(context_id)`) holds some
out whole. Training windows never touch a held-out context; evaluation windows are the
windows at multiples of N inside held-out contexts, the way a corpus cuts them, so a corpus's
held-out prose is among them. Evaluation token and word sequences come from their own seed
namespace.
"""
from __future__ import annotations

import dataclasses
import hashlib
import random
from typing import Callable

import numpy as np

from proto.sources import SourceError, gutenberg_documents, random_word_text, text_id

KINDS = ("prose", "tokens", "words", "continuations")
PROSE = ("britannica", "plays")


@dataclasses.dataclass
class StreamConfig:
    # weight of each kind in the stream (0 = none; they need not sum to 1)
    prose: float = 0.0
    tokens: float = 0.0
    words: float = 0.0
    continuations: float = 0.0
    prose_sources: list[str] = dataclasses.field(default_factory=lambda: list(PROSE))
    # tokens: p(t) ~ (count(t) + token_smoothing)^token_power over the vocabulary, counts from
    # the training prose; power 1 = the prose's frequencies, 0 = uniform
    token_power: float = 1.0
    token_smoothing: float = 0.0
    context_tokens: int = 512        # held-out contexts, as in data_gen sources
    continuations_pool: int = 256    # contexts per length whose continuations are sampled

    def __post_init__(self):
        w = [self.prose, self.tokens, self.words, self.continuations]
        if min(w) < 0:
            raise ValueError("stream weights must be >= 0")
        bad = [s for s in self.prose_sources if s not in PROSE]
        if bad or not self.prose_sources:
            raise ValueError(f"stream.prose_sources must be a non-empty subset of {list(PROSE)}")
        if self.token_power < 0 or self.token_smoothing < 0:
            raise ValueError("stream.token_power and token_smoothing must be >= 0")
        if self.context_tokens < 1 or self.continuations_pool < 1:
            raise ValueError("stream.context_tokens and continuations_pool must be >= 1")

    @property
    def active(self) -> bool:
        return sum(self.weights().values()) > 0

    def weights(self) -> dict[str, float]:
        return {k: getattr(self, k) for k in KINDS if getattr(self, k) > 0}


@dataclasses.dataclass
class StreamText:
    text_id: str
    source: str
    context_id: str
    token_ids: list[int]
    text: str


def _unit(seed: int, what: str) -> float:
    h = hashlib.sha256(f"{seed}|{what}".encode()).digest()
    return int.from_bytes(h[:8], "little") / 2 ** 64


def _rng(seed: int, what: str) -> np.random.Generator:
    h = hashlib.sha256(f"{seed}|{what}".encode()).digest()
    return np.random.default_rng(int.from_bytes(h[:8], "little"))


# generate(contexts, k, n, seed) -> for each context, k continuations of n token ids
Generate = Callable[[list[list[int]], int, int, int], list[list[list[int]]]]


class TextStream:
    """Training texts by position and fixed held-out sets, for lengths in `lengths`."""

    def __init__(self, cfg: StreamConfig, tokenize, detokenize, seed: int,
                 is_heldout: Callable[[str], bool], lengths: list[int],
                 vocab_size: int, generate: Generate | None = None,
                 banned: set[tuple[int, ...]] | None = None):
        if not cfg.active:
            raise SourceError("the text stream has no kind with a weight > 0")
        self.cfg, self.seed, self.lengths = cfg, seed, sorted(set(lengths))
        self.tokenize, self.detokenize = tokenize, detokenize
        self.banned = banned or set()
        w = cfg.weights()
        self.kinds = list(w)
        self.cum = np.cumsum([w[k] for k in self.kinds]) / sum(w.values())
        self._prose(is_heldout)
        self._token_table(vocab_size)
        self.pool: dict[int, list[StreamText]] = {}
        if "continuations" in w:
            if generate is None:
                raise SourceError("stream continuations need the model's sampler")
            self._continuations(generate)

    # ------------------------------------------------------------ set-up
    def _prose(self, is_heldout):
        """All prose as one token array, each token's context and whether it is held out."""
        ids, ctx_names, ctx_of, held = [], [], [], []
        self.docs: list[tuple[int, int]] = []   # (first offset, end) of each document
        ct = self.cfg.context_tokens
        for label in self.cfg.prose_sources:
            for name, text in gutenberg_documents(label):
                toks = self.tokenize(text)
                for b in range(0, len(toks), ct):
                    cid = f"{label}:{name}:{b // ct}"
                    ctx_of.extend([len(ctx_names)] * len(toks[b: b + ct]))
                    ctx_names.append((label, cid))
                    held.append(bool(is_heldout(cid)))
                self.docs.append((len(ids), len(ids) + len(toks)))
                ids.extend(toks)
                # a window never spans two documents: mark the seam as held out
                ctx_of.append(len(ctx_names))
                ctx_names.append((label, ""))
                held.append(True)
                ids.append(-1)
        self.ids = np.asarray(ids, dtype=np.int64)
        self.ctx_of = np.asarray(ctx_of, dtype=np.int64)
        self.ctx_names = ctx_names
        self.held_tok = np.asarray(held)[self.ctx_of]
        self._starts: dict[int, np.ndarray] = {}

    def train_starts(self, n: int) -> np.ndarray:
        """Offsets of every n-token window that lies wholly in kept contexts."""
        if n not in self._starts:
            bad = np.concatenate([[0], np.cumsum(self.held_tok.astype(np.int64))])
            s = np.arange(0, len(self.ids) - n + 1)
            self._starts[n] = s[(bad[s + n] - bad[s]) == 0]
            if not len(self._starts[n]):
                raise SourceError(f"no training prose windows of {n} tokens")
        return self._starts[n]

    def _token_table(self, vocab_size: int):
        kept = self.ids[(~self.held_tok) & (self.ids >= 0)]
        counts = np.bincount(kept, minlength=vocab_size)[:vocab_size].astype(np.float64)
        p = (counts + self.cfg.token_smoothing) ** self.cfg.token_power
        p[counts + self.cfg.token_smoothing == 0] = 0.0
        self.token_cdf = np.cumsum(p / p.sum())

    def _continuations(self, generate: Generate):
        for n in self.lengths:
            rng = _rng(self.seed, f"cont-contexts|{n}")
            starts = rng.choice(self.train_starts(n), self.cfg.continuations_pool, replace=False)
            ctx = [self.ids[s: s + n].tolist() for s in starts]
            seed = int.from_bytes(hashlib.sha256(f"{self.seed}|cont|{n}".encode()).digest()[:4],
                                  "little")
            conts = generate(ctx, 4, n, seed)
            self.pool[n] = [self._text("continuations", list(c)[:n], f"continuations:{i}")
                            for i, ks in enumerate(conts) for c in ks]

    # ------------------------------------------------------------ texts
    def _text(self, source: str, ids: list[int], context: str) -> StreamText:
        ids = [int(t) for t in ids]
        return StreamText(text_id(source, ids), source, context, ids, self.detokenize(ids))

    def _draw(self, kind: str, n: int, what: str) -> StreamText:
        if kind == "prose":
            starts = self.train_starts(n)
            s = int(starts[int(_unit(self.seed, what) * len(starts))])
            label, cid = self.ctx_names[self.ctx_of[s]]
            return self._text(label, self.ids[s: s + n].tolist(), cid)
        if kind == "tokens":
            u = _rng(self.seed, what).random(n)
            ids = np.searchsorted(self.token_cdf, u, side="right").clip(max=len(self.token_cdf) - 1)
            return self._text("tokens", ids.tolist(), f"tokens:{what}")
        if kind == "words":
            rng = random.Random(f"{self.seed}|{what}")
            ids: list[int] = []
            while len(ids) < n:
                ids = self.tokenize(random_word_text(rng, n))
            return self._text("random-words", ids[:n], f"words:{what}")
        pool = self.pool[n]
        return pool[int(_unit(self.seed, what) * len(pool))]

    def example(self, position: int, lengths: tuple[int, ...] | None = None) -> StreamText:
        """The training text at a stream position, of one of `lengths` (default: all)."""
        lengths = lengths or tuple(self.lengths)
        kind = self.kinds[int(np.searchsorted(self.cum, _unit(self.seed, f"kind|{position}"),
                                              side="right").clip(max=len(self.kinds) - 1))]
        n = lengths[int(_unit(self.seed, f"len|{position}") * len(lengths))]
        for attempt in range(100):
            t = self._draw(kind, n, f"train|{position}|{attempt}")
            if tuple(t.token_ids) not in self.banned:
                return t
        raise SourceError(f"stream position {position}: 100 draws all equal held-out texts")

    def batch_ids(self, kind: str, n: int, count: int, what: str) -> np.ndarray:
        """[count, n] token ids of training prose windows or random tokens in one vectorised
        draw keyed by `what` (for accelerator-sized batches; no check against held-out texts,
        which held-out contexts already keep out of prose windows)."""
        rng = _rng(self.seed, f"batch|{kind}|{n}|{what}")
        if kind == "prose":
            starts = self.train_starts(n)
            s = starts[rng.integers(0, len(starts), count)]
            return self.ids[s[:, None] + np.arange(n)]
        if kind == "tokens":
            u = rng.random((count, n))
            return np.searchsorted(self.token_cdf, u, side="right").clip(
                max=len(self.token_cdf) - 1)
        raise SourceError(f"batch_ids draws prose or tokens, not {kind}")

    def heldout(self, kind: str, n: int, count: int) -> list[StreamText]:
        """A fixed held-out set: `count` texts of kind and length n (fewer if prose runs out)."""
        if kind == "prose":
            # cut at multiples of n from each document's start, as a corpus cuts its windows
            ok = [s for a, b in self.docs for s in range(a, b - n + 1, n)
                  if self.held_tok[s: s + n].all()]
            ok.sort(key=lambda s: _unit(self.seed, f"heldout-prose|{n}|{s}"))
            out = []
            for s in ok[:count]:
                label, cid = self.ctx_names[self.ctx_of[s]]
                out.append(self._text(label, self.ids[s: s + n].tolist(), cid))
            return out
        if kind == "continuations":
            raise SourceError("continuations have no held-out set of their own")
        return [self._draw(kind, n, f"eval|{n}|{i}") for i in range(count)]
