"""Texts for the encoder: corpus rows (with their fitted e's) and an endless raw-text stream.

Held-out split by context: a text is held out when the hash of its context_id falls in the
held-out bucket (`heldout_percent`, salted by the data seed), so contexts are held out whole and
no held-out text and no text sharing its context is ever trained on. The raw stream obeys the
same rule (its windows carry the same ids as the corpus's for the same source) and also drops
any window whose tokens equal a held-out text; with no corpus, its held-out windows are the
evaluation set.

Every example a step sees is a pure function of (seed, global position): position p of the
stream is a raw window or a corpus text by a hash of p, and which one by a seeded permutation
per epoch, so a resumed run (which restores the step) sees exactly the batches it would have.
A curriculum over lengths narrows both pools to the lengths active at the position's step.
"""
from __future__ import annotations

import dataclasses
import hashlib
import random
from pathlib import Path

import numpy as np

from data_gen.corpus import read_table
from data_gen.stream import TextStream
from data_gen.texts import corpus_texts

from .config import DataConfig


@dataclasses.dataclass
class Example:
    text_id: str
    source: str
    context_id: str
    token_ids: list[int]
    text: str
    targets: np.ndarray | None = None   # fitted e's of the solved restarts [R, d]
    opt_accuracy: float | None = None   # best fitted accuracy (the optimised-e baseline)

    @property
    def n(self) -> int:
        return len(self.token_ids)


def _unit(seed: int, what: str) -> float:
    h = hashlib.sha256(f"{seed}|{what}".encode()).digest()
    return int.from_bytes(h[:8], "little") / 2 ** 64


def context_held_out(context_id: str, cfg: DataConfig) -> bool:
    return _unit(cfg.seed, f"ctx|{context_id}") < cfg.heldout_percent / 100


def held_out(ex: Example, cfg: DataConfig) -> bool:
    """Whole contexts are held out, by hash; a text with no context is its own context.

    Holding out single texts as well would take their contexts with them and compound: on a
    corpus of 314 contexts for 552 texts, 10 % of contexts plus 10 % of texts swept out 36 %.
    """
    if ex.context_id:
        return context_held_out(ex.context_id, cfg)
    return _unit(cfg.seed, f"text|{ex.text_id}") < cfg.heldout_percent / 100


def as_example(t) -> Example:
    return Example(t.text_id, t.source, t.context_id, list(t.token_ids), t.text)


def make_stream(cfg: DataConfig, lengths: list[int], lm, banned: set, generate=None
                ) -> TextStream:
    """The never-repeating training stream, holding out the same contexts as the corpus."""
    return TextStream(cfg.stream, lm.tokenize, lm.detokenize, cfg.seed,
                      lambda cid: context_held_out(cid, cfg), lengths,
                      lm.model.get_input_embeddings().weight.shape[0], generate, banned)


def stream_heldout(stream: TextStream, lengths: list[int], count: int) -> list[Example]:
    """`count` held-out texts of each stream kind (but continuations) and length."""
    return [as_example(t) for kind in stream.kinds if kind != "continuations"
            for n in lengths for t in stream.heldout(kind, n, count)]


def _partition(xs: list[Example], cfg: DataConfig) -> tuple[list[Example], list[Example]]:
    """(held out, kept), hashing each text once."""
    flags = [held_out(x, cfg) for x in xs]
    return ([x for x, f in zip(xs, flags) if f], [x for x, f in zip(xs, flags) if not f])


def corpus_examples(root: str | Path) -> list[Example]:
    """One Example per text of a corpus, with the e's of its solved restarts as targets."""
    tab = read_table(root, columns=["text_id", "source", "context_id", "text", "token_ids",
                                    "e", "accuracy", "solved"], require_complete=True)
    d = tab.schema.field("e").type.list_size
    es = tab.column("e").combine_chunks().flatten().to_numpy().reshape(-1, d)
    by: dict[str, Example] = {}
    cols = {c: tab.column(c).to_pylist() for c in ("text_id", "source", "context_id", "text",
                                                    "token_ids", "accuracy", "solved")}
    for i, tid in enumerate(cols["text_id"]):
        ex = by.get(tid)
        if ex is None:
            ex = by[tid] = Example(tid, cols["source"][i], cols["context_id"][i],
                                   list(cols["token_ids"][i]), cols["text"][i], None, 0.0)
        ex.opt_accuracy = max(ex.opt_accuracy, float(cols["accuracy"][i]))
        if cols["solved"][i]:
            row = es[i: i + 1].astype(np.float32)
            ex.targets = row if ex.targets is None else np.concatenate([ex.targets, row])
    return list(by.values())


def raw_pool(cfg: DataConfig, lengths: list[int], tokenize, detokenize) -> list[Example]:
    """`raw_pool` windows per raw source and length, drawn from data_gen's sources by seed."""
    srcs = [dataclasses.replace(s, count=cfg.raw_pool, lengths=list(lengths)) for s in cfg.raw]
    texts, _ = corpus_texts(srcs, tokenize, detokenize, cfg.seed)
    return [Example(t.text_id, t.source, t.context_id, list(t.token_ids), t.text)
            for t in texts]


def eval_order(xs: list[Example], seed: int, limit: int = 0) -> list[Example]:
    """The first `limit` of xs (0 = all) in the evaluation order: seeded, by text id."""
    xs = sorted(xs, key=lambda x: _unit(seed, f"eval|{x.text_id}"))
    return xs[:limit] if limit else xs


class Split:
    """Training and held-out examples, and the stream of training positions."""

    def __init__(self, cfg: DataConfig, corpus: list[Example], raw: list[Example],
                 lengths: list[int], stream: TextStream | None = None):
        self.cfg, self.stream = cfg, stream
        keep = set(lengths)
        self.lengths = sorted(keep)
        self.joins = list(cfg.curriculum) or [0] * len(self.lengths)
        if len(self.joins) != len(self.lengths):
            raise ValueError(f"curriculum has {len(self.joins)} steps for lengths "
                             f"{self.lengths}; give one step per length")
        corpus = [x for x in corpus if x.n in keep]
        raw = [x for x in raw if x.n in keep]
        self.heldout, self.train_corpus = _partition(corpus, cfg)
        banned = {x.text_id for x in self.heldout} | {tuple(x.token_ids) for x in self.heldout}
        self.heldout_raw, train_raw = _partition(raw, cfg)
        self.train_raw = [x for x in train_raw if x.text_id not in banned
                          and tuple(x.token_ids) not in banned]
        if stream is not None:
            stream.banned |= banned
        if not self.heldout:  # raw text only: evaluate on held-out raw windows
            self.heldout = (self.heldout_raw if stream is None else
                            stream_heldout(stream, self.lengths, max(cfg.eval_texts, 64)))
        has_raw = bool(self.train_raw) or stream is not None
        if not self.train_corpus and not has_raw:
            raise ValueError("no training texts left after the held-out split")
        self.raw_fraction = (cfg.raw_fraction if self.train_corpus and has_raw else
                             (1.0 if has_raw else 0.0))
        self._perms: dict[tuple[str, int], list[int]] = {}
        self._pools: dict[tuple[str, tuple[int, ...]], list[Example]] = {}
        for start in sorted(set(self.joins)):
            if stream is None and not any(self._pool(k, self.active(start))
                                          for k in ("raw", "corpus")):
                raise ValueError(f"no training texts of lengths {list(self.active(start))} "
                                 f"for the curriculum stage from step {start}")

    def active(self, step: int) -> tuple[int, ...]:
        """The lengths the curriculum trains on at an optimiser step."""
        return tuple(n for n, s in zip(self.lengths, self.joins) if step >= s)

    def _pool(self, kind: str, active: tuple[int, ...]) -> list[Example]:
        key = (kind, active)
        if key not in self._pools:
            full = self.train_raw if kind == "raw" else self.train_corpus
            self._pools[key] = (full if len(active) == len(self.lengths) else
                                [x for x in full if x.n in active])
        return self._pools[key]

    def eval_set(self, limit: int) -> list[Example]:
        """The first `limit` held-out texts in a fixed seeded order (0 = all)."""
        return eval_order(self.heldout, self.cfg.seed, limit)

    def _pick(self, kind: str, pool: list[Example], k: int) -> Example:
        epoch, i = divmod(k, len(pool))  # kind names the pool: source and active lengths
        key = (kind, epoch)
        if key not in self._perms:
            # keep each pool's current and previous epoch (pools differ in size)
            self._perms = {kk: v for kk, v in self._perms.items()
                           if kk[0] != kind or kk[1] >= epoch - 1}
            perm = list(range(len(pool)))
            random.Random(f"{self.cfg.seed}|{kind}|{epoch}").shuffle(perm)
            self._perms[key] = perm
        return pool[self._perms[key][i]]

    def example(self, position: int, step: int = 0) -> Example:
        """The training example at a global stream position (of optimiser step `step`)."""
        active = self.active(step)
        kind = "raw" if _unit(self.cfg.seed, f"mix|{position}") < self.raw_fraction else "corpus"
        if kind == "raw" and self.stream is not None:
            return as_example(self.stream.example(position, active))
        pool = self._pool(kind, active)
        if not pool and self.stream is not None:
            return as_example(self.stream.example(position, active))
        if not pool:  # this stage's lengths are in one source only
            kind = "corpus" if kind == "raw" else "raw"
            pool = self._pool(kind, active)
        name = kind if len(active) == len(self.lengths) else f"{kind}|{active}"
        return self._pick(name, pool, position)

    def micro_batch(self, step: int, micro: int, rank: int, world: int, micro_size: int,
                    accum: int) -> list[Example]:
        """Rank `rank`'s micro-batch `micro` of optimiser step `step`: the same global batch
        of positions whatever the number of ranks."""
        g = micro_size * accum * world
        first = step * g + (micro * world + rank) * micro_size
        return [self.example(p, step) for p in range(first, first + micro_size)]
