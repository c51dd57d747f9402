"""Build (or resume) a corpus of proto-token solutions: text -> e, with one shared m.

  python -m data_gen.build --config configs/data_gen/tiny.yaml threads=1   # tiny CPU run, ~15 s
  python -m data_gen.build --config configs/data_gen/tiny.yaml threads=1 text_chunk=4 \\
      out=outputs/corpus/tiny-chunked        # tiny CPU run, one e per 4 tokens of each text
  python -m data_gen.build --config configs/data_gen/default.yaml    # smollm2-135m, ~500 texts
  python -m data_gen.build --config configs/data_gen/paper.yaml      # GPU scale
  torchrun --nproc_per_node 8 -m data_gen.build --config configs/data_gen/paper.yaml  # 8 GPUs
  RANK=1 WORLD_SIZE=2 python -m data_gen.build --config ...   # or by hand, one process per rank
  python -m data_gen.verify outputs/corpus/tiny                 # checksums + re-decode a sample

Rerunning the same command resumes: finished chunks are checked (size, sha256, row count)
and skipped, a corrupt or truncated one is moved aside to *.corrupt and redone, and the
result equals an uninterrupted build. A directory built with another model or config is
refused (change `out`, or delete the directory yourself).

What a build does (design.md, "Corpus format"):
  1. enumerate the texts from `sources` (data_gen/texts.py), deterministic for the config;
  2. make the shared m (rank 0; others wait for m.safetensors): `m_init` joint (fitted jointly
     with the e's of `warm_texts` texts, design.md's recipe), rowmean (mean of the m's of the
     warm texts fitted one by one) or random (no warm-up); see README for which fits fastest;
  3. cut the text list into chunks of `chunk_size` texts; rank r takes chunks i with
     i % WORLD_SIZE == r and fits each in ONE Fitter.fit call with m frozen (a redone chunk is
     bit-identical on the same hardware and thread count); a text picked by `restart_fraction`
     gets `restarts` rows (restarts), others one; with `text_chunk` C > 0 every text is cut
     into chunks of C tokens (proto.solution.chunk_spans) and each chunk is a row of its own,
     fitted in the work chunk's one Fitter.fit call (a text is solved when all its chunks are);
  4. write the chunk's shard, then check the connectivity of up to `pairs_per_chunk` pairs of
     solved restarts of one text (linear + quadratic Bezier) into the chunk's pairs shard;
  5. the rank that sees every chunk present writes manifest.json with status complete
     (otherwise partial).
The last stdout line is JSON: corpus, status, texts, rows, solved, pairs, seconds, ... (and
text_chunks, text_chunks_solved when text_chunk > 0: texts and solved count whole texts).
Errors (bad config key, unreadable source, mismatching corpus) are one `error:` line, exit 2.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import random
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from tqdm import tqdm

from proto import config as C
from proto.decode import h_lm, sample_continuations
from proto.fit import (
    FitRow,
    Fitter,
    Recipe,
    embedding_std,
    fit_shared_m,
    get_recipe,
    init_vector,
    start_rows_at,
)
from proto.io import atomic_write_bytes, atomic_write_json
from proto.models import ModelFields, ModelLoadError, load_model
from proto.paths import as_point, bezier, linear
from proto.progress import bar
from proto.providers import start_record, text_starts
from proto.solution import chunk_spans
from proto.sources import SourceError
from proto.start import load_start
from proto.tracking import run as mlflow_run

from . import corpus as K
from .texts import SourceConfig, Text, check_sources, corpus_texts

# Config fields that do not change what a corpus contains: may differ between runs of a build.
# Settings that change how fast a corpus is built, not what it holds: a build may resume
# with other values. Tail restarts only back up a straggling text with more seeds of the same
# recipe (eval.bench_tail: never more row-steps), so they belong here too.
VOLATILE = ("out", "device", "threads", "mlflow", "wait_seconds", "progress_seconds", "order",
            "tail_restarts", "tail_after")


@dataclasses.dataclass
class BuildConfig(ModelFields):
    out: str = "outputs/corpus/default"   # corpus directory
    # default_v2: what the corpora were built with; `default`'s learned start is unused with a
    # frozen m and its lr 0.2 was not measured there
    recipe: str = "default_v2"            # default_v2 | default | default_v1 | sink | paper
    recipe_overrides: dict = dataclasses.field(default_factory=dict)  # any Recipe field
    sources: list[SourceConfig] = dataclasses.field(default_factory=lambda: [
        SourceConfig(name="britannica", count=16, lengths=[16]),
        SourceConfig(name="random-words", count=16, lengths=[16])])
    restarts: int = 2                     # rows of a text picked by restart_fraction
    restart_fraction: float = 0.1         # share of texts fitted `restarts` times (others once)
    chunk_size: int = 32                  # texts per work chunk (one shard each)
    batch_size: int = 32                  # rows per forward pass
    # extra seeds of straggling texts in a chunk's idle rows (proto.fit's tail restarts; the
    # first seed to solve counts): x1.96 texts/h on 32 texts, never more row-steps
    # (eval.bench_tail); 0 = off. Groups that share a trained vector never use them.
    tail_restarts: int = 3
    tail_after: float = 1.5               # a straggler: a row at this x the median solved steps
    m_init: str = "joint"                 # how the shared m is made, then frozen:
    #   joint    fitted jointly with the e's of `warm_texts` texts (design.md's recipe)
    #   rowmean  the warm texts fitted each with its own m; m = the mean of those m's
    #   random   N(0, init std) like any initial vector; no warm-up
    #   start    the m0 of the model's learned start (Recipe.start, else the shipped one), with
    #            every e fitted from the start's e0: a pair learned together, so texts solve in
    #            a fraction of the steps a random m needs, and an encoder predicts e near e0
    warm_texts: int = 16                  # texts of the m warm-up
    warm_steps: int = 300                 # steps of the warm-up fit
    pairs_per_chunk: int = 2              # connectivity checks per chunk (restart pairs)
    # tokens per e: > 0 cuts every text (of any length, even past the decoder's context) into
    # consecutive chunks of this many tokens (the last may be shorter), each fitted and stored
    # as a row of its own that also carries its text's parent_id, chunk and span
    # (docs/guide.md); to readers such a corpus is one of short texts. 0 = one e per text.
    # Not `chunk_size`, which counts texts per work chunk.
    text_chunk: int = 0
    # Bezier control point (proto.paths.bezier): trained until the path is solved on the grid
    # or its expected loss stops falling, at most bezier_steps steps of bezier_samples t's;
    # bezier_lr is relative to the pair's RMS coordinate distance (eval.connectivity measured
    # 0.005-0.08 on SmolLM2 pairs: all converge, larger is faster with longer curves). These
    # values are part of a corpus's fingerprint, so they stay what existing corpora were built with.
    bezier_steps: int = 100
    bezier_samples: int = 8
    bezier_lr: float = 1e-2
    path_grid: int = 21                   # t grid for path accuracies
    # an encoder checkpoint (or 'default'): every text's first attempt starts at the encoder's
    # e and runs init_recipe (refinement; default `refine`: constant lr, no noise); a text it
    # leaves unsolved starts again from e0 with the recipe, as do its tail restarts. The
    # encoder's m must be the corpus's m.
    init_from: str = ""
    init_recipe: str = "refine"
    init_overrides: dict = dataclasses.field(default_factory=dict)   # its Recipe fields
    seed: int = 0
    threads: int = 0                      # torch CPU threads (0 = torch's default)
    wait_seconds: float = 7200.0          # ranks > 0: how long to wait for rank 0's m
    progress_seconds: float = 10.0        # progress line interval on stderr
    order: str = "forward"                # forward | reverse: the order a rank takes its chunks;
    # a second process of a lagging rank with order=reverse works from the other end (finished
    # chunks are skipped when reached), so the rank's share ends sooner
    mlflow: bool = True

    def __post_init__(self):
        if not self.out:
            raise ValueError("out (the corpus directory) is empty")
        if not self.sources:
            raise ValueError("sources is empty")
        for name, lo in (("restarts", 1), ("chunk_size", 1), ("batch_size", 1),
                         ("warm_steps", 1), ("path_grid", 2), ("bezier_samples", 1)):
            if getattr(self, name) < lo:
                raise ValueError(f"{name} must be >= {lo}")
        for name in ("warm_texts", "pairs_per_chunk", "bezier_steps", "threads", "tail_restarts",
                     "tail_after", "text_chunk"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        if self.m_init not in ("joint", "rowmean", "random", "start"):
            raise ValueError(f"m_init must be joint, rowmean, random or start, "
                             f"not {self.m_init!r}")
        if self.order not in ("forward", "reverse"):
            raise ValueError("order must be forward or reverse")
        if not 0.0 <= self.restart_fraction <= 1.0:
            raise ValueError("restart_fraction must be in [0, 1]")
        if self.bezier_lr <= 0:
            raise ValueError("bezier_lr must be > 0")
        get_recipe(self.recipe, **self.recipe_overrides)  # unknown recipe or field -> error
        get_recipe(self.init_recipe, **self.init_overrides)


def _recipe(cfg: BuildConfig):
    return get_recipe(cfg.recipe, **cfg.recipe_overrides)


def content_config(cfg: BuildConfig, precision: str) -> dict:
    """The config fields that decide the corpus content (dtype resolved to the real one)."""
    d = C.to_dict(cfg)
    for k in VOLATILE:
        d.pop(k, None)
    if not cfg.init_from:   # they change nothing then; corpora built before them still resume
        d.pop("init_recipe")
        d.pop("init_overrides")
    if not cfg.text_chunk:  # likewise: corpora built before text_chunk still resume
        d.pop("text_chunk")
    d["dtype"] = precision
    return d


def fingerprint(content: dict) -> str:
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def _diff(a, b, prefix="") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            out += _diff(a.get(k), b.get(k), f"{prefix}{k}.")
        return out
    return [] if a == b else [f"{prefix[:-1]}: {a!r} (corpus) vs {b!r} (asked)"]


def n_restarts(cfg: BuildConfig, tid: str) -> int:
    """Restart count of a text: stable per (seed, text), independent of the other texts."""
    if cfg.restarts == 1 or cfg.restart_fraction <= 0:
        return 1
    h = hashlib.sha256(f"{cfg.seed}|restarts|{tid}".encode()).digest()
    u = int.from_bytes(h[:8], "little") / 2 ** 64
    return cfg.restarts if u < cfg.restart_fraction else 1


def warm_set(cfg: BuildConfig, texts: list[Text]) -> list[Text]:
    rng = random.Random(f"{cfg.seed}|warm")
    idx = sorted(rng.sample(range(len(texts)), min(cfg.warm_texts, len(texts))))
    return [texts[i] for i in idx]


def shared_m(lm, cfg: BuildConfig, recipe, warm: list[Text], prog):
    """The corpus's m (see BuildConfig.m_init) and the metadata saved with it."""

    meta = {"m_init": cfg.m_init}
    if cfg.m_init == "start":
        m0 = corpus_start(lm, recipe)[1]
        prog.line("shared m: the learned start's m0 (m_init=start), e's fitted from its e0")
        return m0.to(lm.device), meta
    if cfg.m_init == "random":
        prog.line("shared m: a random vector (m_init=random), no warm-up")
        return init_vector(cfg.seed * 7919 + 17, lm.d_model,
                           recipe.init_std or embedding_std(lm)).to(lm.device), meta
    prog.line(f"shared m ({cfg.m_init}): fitting {len(warm)} warm-up texts "
              f"(<= {cfg.warm_steps} steps)")
    cb = prog.fit_cb("warm-up")
    toks = [t.token_ids for t in warm]
    if cfg.m_init == "joint":
        m, wres = fit_shared_m(lm, toks, recipe, steps=cfg.warm_steps, seed=cfg.seed,
                               progress=cb)
    else:
        fitter = Fitter(lm, dataclasses.replace(recipe, max_steps=cfg.warm_steps),
                        batch_size=cfg.batch_size, seed=cfg.seed)
        wres = fitter.fit([FitRow(ids, f"warm{i}", 0) for i, ids in enumerate(toks)],
                          progress=cb)
        m = torch.stack([r.m for r in wres]).mean(0)
    meta.update({"warm_text_ids": [t.text_id for t in warm],
                 "warm_solved": sum(r.solved for r in wres),
                 "warm_accuracy_mean": sum(r.accuracy for r in wres) / len(wres),
                 "warm_steps": cfg.warm_steps})
    prog.line(f"shared m: {meta['warm_solved']}/{len(wres)} warm-up texts solved")
    return m, meta


def corpus_start(lm, recipe):
    """(e0, m0) of m_init=start: the recipe's start file, else the start shipped for the model."""
    start = load_start(recipe.start or "learned", lm, recipe.arrangement, recipe.prefix)
    if start is None:
        raise C.ConfigError(f"m_init=start needs a learned start for {lm.name} (none is "
                            f"shipped for its weights; learn one with python -m proto.meta)")
    return start


def encoded(cfg: BuildConfig, lm, texts: list[Text]):
    """(e, m, checkpoint) of init_from for every text (one batched encoder pass), read before
    anything is written, so that an unreadable encoder leaves no directory behind."""
    try:
        return text_starts(cfg.init_from, lm, [t.token_ids for t in texts])
    except ValueError as exc:
        raise C.ConfigError(str(exc)) from None


def encoder_starts(fitter, cfg: BuildConfig, texts: list[Text], m, prog, starts) -> None:
    """Refinement: the fitter starts each text at the encoder's e (`encoded`)."""

    e, em, blob = starts
    if m is None or not torch.allclose(em, m.cpu()):
        raise C.ConfigError(f"encoder {blob['path']} decodes with another m than this corpus "
                            f"(train it on a corpus with the same m_init and model)")
    starts = {t.text_id: e[i] for i, t in enumerate(texts)}
    start_rows_at(fitter, lambda row: starts[row.key],
                  get_recipe(cfg.init_recipe, **cfg.init_overrides))
    prog.line(f"starts: encoder {blob['path']} (step {blob['step']}) for {len(texts)} texts")


# ---------------------------------------------------------------- one chunk

@dataclasses.dataclass
class ChunkText(Text):
    """A chunk of a text (text_chunk > 0), fitted and stored as a short text of its own.
    Its text_id names the parent and the span, so it is stable across resumes and ranks and
    never shared with a chunk of another size, whose tokens differ."""
    parent_id: str = ""
    chunk: int = 0
    span: tuple[int, int] = (0, 0)
    parent_n_tokens: int = 0


def text_units(texts: list[Text], size: int, detokenize) -> list[list[Text]]:
    """For each text, the texts its rows fit: itself (size 0), or its chunks of `size`
    tokens (proto.solution.chunk_spans, as proto.fit --chunk cuts them)."""
    if not size:
        return [[t] for t in texts]
    return [[ChunkText(f"{t.text_id}[{s}:{e}]", t.source, t.context_id, t.token_ids[s:e],
                       detokenize(t.token_ids[s:e]), t.text_id, k, (s, e), len(t.token_ids))
             for k, (s, e) in enumerate(chunk_spans(len(t.token_ids), size))] for t in texts]


def parent_key(t: Text) -> str:
    """The whole text a row's text belongs to: restart_fraction picks whole texts."""
    return t.parent_id if isinstance(t, ChunkText) else t.text_id


def fit_chunk(lm, fitter, cfg: BuildConfig, texts: list[Text], m, progress=None):
    """Fit the rows of one chunk in ONE Fitter.fit call; returns a pyarrow table.
    texts: what the rows fit (text_units), ChunkTexts add their parent columns."""

    rows, owner = [], []
    for t in texts:
        for r in range(n_restarts(cfg, parent_key(t))):
            rows.append(FitRow(list(t.token_ids), t.text_id, r))
            owner.append(t)
    res = fitter.fit(rows, m_mode="frozen" if m is not None else "row", m=m, progress=progress)
    hs, _ = h_lm(lm, [t.token_ids for t in texts])
    h_by = {t.text_id: h for t, h in zip(texts, hs)}
    d = lm.d_model
    e = np.stack([r.e.numpy().astype(np.float32) for r in res]).reshape(-1)
    cols = {
        "text_id": [t.text_id for t in owner],
        "source": [t.source for t in owner],
        "context_id": [t.context_id for t in owner],
        "restart": [r.restart for r in res],
        "text": [t.text for t in owner],
        "token_ids": [list(t.token_ids) for t in owner],
        "n_tokens": [len(t.token_ids) for t in owner],
        "e": pa.FixedSizeListArray.from_arrays(pa.array(e, type=pa.float32()), d),
        "accuracy": [r.accuracy for r in res],
        "c_tokens": [r.c_tokens for r in res],
        "h_lm": [h_by[t.text_id] for t in owner],
        "loss": [r.loss for r in res],
        "steps": [r.steps for r in res],
        "seconds": [r.seconds for r in res],
        "solved": [r.solved for r in res],
        "status": [r.status for r in res],
    }
    chunked = bool(cfg.text_chunk)
    if chunked:
        cols.update({"parent_id": [t.parent_id for t in owner],
                     "chunk": [t.chunk for t in owner], "span": [list(t.span) for t in owner],
                     "parent_n_tokens": [t.parent_n_tokens for t in owner]})
    schema = K.shard_schema(d, chunked)
    return pa.table({k: (v if isinstance(v, pa.Array) else pa.array(v, type=schema.field(k).type))
                     for k, v in cols.items()}, schema=schema)


def chunk_pairs(lm, arr, cfg: BuildConfig, chunk: int, table, m):
    """Connectivity of sampled pairs of solved restarts of one text (from the written shard)."""

    data = table.select(["text_id", "restart", "token_ids", "e", "solved"]).to_pylist()
    by_text: dict[str, list[dict]] = {}
    for r in data:
        if r["solved"]:
            by_text.setdefault(r["text_id"], []).append(r)
    cands = [(a, b) for rs in by_text.values() for i, a in enumerate(rs) for b in rs[i + 1:]]
    rng = random.Random(f"{cfg.seed}|pairs|{chunk}")
    pick = rng.sample(cands, min(cfg.pairs_per_chunk, len(cands)))
    out = {f.name: [] for f in K.PAIR_SCHEMA}
    for k, (a, b) in enumerate(pick):
        ea, eb = torch.tensor(a["e"]), torch.tensor(b["e"])
        p1, p2 = as_point(ea, m), as_point(eb, m)
        lin = linear(lm, arr, a["token_ids"], p1, p2, grid=cfg.path_grid)
        bez = bezier(lm, arr, a["token_ids"], p1, p2, steps=cfg.bezier_steps,
                     samples=cfg.bezier_samples, lr=cfg.bezier_lr, grid=cfg.path_grid,
                     seed=cfg.seed * 1_000_003 + chunk * 1009 + k)
        cos = float(torch.nn.functional.cosine_similarity(ea, eb, dim=0))
        for key, v in (("text_id", a["text_id"]), ("restart_a", a["restart"]),
                       ("restart_b", b["restart"]), ("cosine_distance", 1.0 - cos),
                       ("linear_min_acc", lin.min_accuracy),
                       ("linear_mean_acc", lin.mean_accuracy),
                       ("bezier_min_acc", bez.min_accuracy),
                       ("bezier_mean_acc", bez.mean_accuracy),
                       ("length_ratio", bez.length_ratio)):
            out[key].append(v)
    return pa.table(out, schema=K.PAIR_SCHEMA)


# ---------------------------------------------------------------- the build

def _rank_world() -> tuple[int, int]:
    try:
        rank = int(os.environ.get("RANK", "0"))
        world = int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise C.ConfigError("RANK and WORLD_SIZE must be integers") from None
    if world < 1 or not 0 <= rank < world:
        raise C.ConfigError(f"RANK={rank} WORLD_SIZE={world}: need 0 <= RANK < WORLD_SIZE")
    return rank, world


def _check_directory(root: Path) -> dict | None:
    """build.json of an existing corpus dir; refuse a directory that is something else."""
    if not root.exists():
        return None
    if not root.is_dir():
        raise C.ConfigError(f"out {root} exists and is not a directory")
    bj = root / "build.json"
    if bj.exists():
        try:
            return json.loads(bj.read_text())
        except (OSError, ValueError) as exc:
            raise C.ConfigError(f"{bj} is unreadable ({exc}); not resuming into it") from None
    # hidden entries are temp files (another rank may be writing build.json right now)
    if any(not p.name.startswith(".") for p in root.iterdir()):
        raise C.ConfigError(f"out {root} is a non-empty directory without build.json (not a "
                            f"corpus of this tool); choose another out")
    return None


def _refuse_if_different(root: Path, have: dict, want: dict):
    if have.get("format") != K.FORMAT:
        raise C.ConfigError(f"{root}: build.json format {have.get('format')!r} is not "
                            f"{K.FORMAT}")
    diffs = []
    if have.get("model") != want["model"]:
        diffs.append(f"model: {have.get('model')} (corpus) vs {want['model']} (asked)")
    if have.get("fingerprint") != want["fingerprint"]:
        diffs += _diff(have.get("config", {}), want["config"])
    # The config names a recipe; what the name resolves to can change between versions of
    # protospace (the default recipe did). A field added since the corpus was started counts
    # as unchanged when it holds the dataclass default, i.e. behaves as before.
    base = dataclasses.asdict(Recipe())
    old_r, new_r = have.get("recipe", {}), want["recipe"]
    for k in sorted(set(old_r) | set(new_r)):
        a, b = old_r.get(k, base.get(k)), new_r.get(k, base.get(k))
        if a != b:
            diffs.append(f"recipe.{k}: {a!r} (corpus) vs {b!r} (now)")
    if diffs:
        raise C.ConfigError(f"corpus {root} was built with a different model/config; refusing "
                            f"to mix (use another out): " + "; ".join(diffs[:4]))


class Progress:
    """What a build tells the user on stderr: one-off status lines (always), and a progress
    bar of texts fitted with the current chunk's step (proto.progress: rank 0, a terminal)."""

    def __init__(self, rank: int, world: int, total_texts: int, every: float):
        self.tag = f"[data_gen r{rank}/{world}]"
        self.total, self.every = total_texts, every
        self.done = self.solved = 0
        self.text_chunks = self.text_chunks_solved = 0   # text_chunk > 0
        self.bar = None

    def line(self, msg: str):
        tqdm.write(f"{self.tag} {msg}", file=sys.stderr)

    def start(self, total: int):
        self.total = total
        self.bar = bar(total, "data_gen", unit="text", mininterval=self.every)

    def skip(self, texts: int):
        """A chunk fitted by an earlier run: its texts leave the bar's total."""
        self.total -= texts
        if self.bar is not None:
            self.bar.total = self.total
            self.bar.refresh()

    def chunk_done(self, i: int, counts: dict, chunks_left: int):
        """counts: K.solved_counts of the chunk's rows (whole texts, and text chunks if any)."""
        texts = counts["texts"]
        self.done += texts
        self.solved += counts["solved_texts"]
        self.text_chunks += counts.get("text_chunks", 0)
        self.text_chunks_solved += counts.get("text_chunks_solved", 0)
        pieces = (f" | text chunks solved {self.text_chunks_solved / self.text_chunks:.2f}"
                  if self.text_chunks else "")
        # one line per finished chunk, in logs too (the bar shows only on a terminal)
        self.line(f"chunk {i} done | texts {self.done}/{self.total} | solved "
                  f"{self.solved / max(1, self.done):.2f}{pieces} | {chunks_left} chunks left")
        if self.bar is not None:
            self.bar.update(texts)
            self.bar.set_postfix(solved=f"{self.solved / max(1, self.done):.2f}",
                                 chunks_left=chunks_left)

    def fit_cb(self, i: int):
        def cb(p):
            if self.bar is not None:
                self.bar.set_postfix(chunk=i, step=p["step"], rows=f"{p['done']}/{p['total']}",
                                     solved=p["solved"], refresh=False)
        return cb

    def close(self):
        if self.bar is not None:
            self.bar.close()


def _wait_for(path: Path, seconds: float, what: str):
    t0 = time.time()
    while not path.exists():
        if time.time() - t0 > seconds:
            raise C.ConfigError(f"waited {seconds:.0f} s for {what} ({path}); is rank 0 running?")
        time.sleep(0.5)


GENERATED = "generated.json"


def _generator(lm, root: Path, rank: int, wait_seconds: float):
    """The `generated` source's sampler, cached in the corpus as generated.json.

    Sampling is seeded, but logits (and so draws) can differ with thread count or device;
    the cache makes a resumed build or another rank use exactly the texts fitted first.
    """
    made: dict = {}

    def generate(contexts, k, n, seed):
        key = f"n={n}|k={k}|seed={seed}|" + hashlib.sha256(
            json.dumps(contexts).encode()).hexdigest()[:16]
        path = root / GENERATED
        if not path.exists() and rank > 0:
            _wait_for(path, wait_seconds, "rank 0's generated texts")
        if path.exists():
            try:
                cached = json.loads(path.read_text())
            except (OSError, ValueError) as exc:
                raise C.ConfigError(f"{path} is unreadable ({exc}); move it away to "
                                    f"regenerate") from None
            if key in cached:
                return cached[key]
        made[key] = sample_continuations(lm, contexts, k, n, seed)
        return made[key]
    return generate, made


def _scan(root: Path, n_chunks: int) -> tuple[list[dict], list[dict], list[int]]:
    """Sidecars of present shards (size-checked) and the chunks still missing."""
    shards, pairs, missing = [], [], []
    for i in range(n_chunks):
        s1, side1 = K.check_shard(root, K.SHARDS, i, deep=False)
        s2, side2 = K.check_shard(root, K.PAIRS, i, deep=False)
        if s1 == "ok" and s2 == "ok":
            shards.append(side1)
            pairs.append(side2)
        else:
            missing.append(i)
    return shards, pairs, missing


def _load_lm(cfg: BuildConfig):

    device = cfg.device or None
    if device is None and torch.cuda.is_available() and "LOCAL_RANK" in os.environ:
        device = f"cuda:{int(os.environ['LOCAL_RANK'])}"  # torchrun: one GPU per rank
    return load_model(cfg.model, device=device, dtype=cfg.dtype, **_record(cfg))


def _record(cfg: BuildConfig) -> dict:
    """The precision record that decides `auto`: a corpus resumes in the precision it was
    begun in (its build.json), so a resumed build never refuses itself over precision; a new
    corpus from an encoder's e's is fitted in the encoder's precision."""
    bj = Path(cfg.out) / "build.json"
    if bj.exists():
        try:
            rec = json.loads(bj.read_text()).get("precision")
        except (OSError, ValueError):
            return {}   # _check_directory reports the damaged corpus itself
        return {"record": rec, "what": f"corpus {cfg.out}"}
    if cfg.init_from:
        try:
            return start_record(cfg.init_from)
        except ValueError as exc:
            raise C.ConfigError(str(exc)) from None
    return {}


def _setup(cfg: BuildConfig, lm):
    """(fitter, build info): what build.json records and a resumed build must match."""
    recipe = _recipe(cfg)
    fitter = Fitter(lm, recipe, batch_size=cfg.batch_size, seed=cfg.seed,
                    tail_restarts=cfg.tail_restarts, tail_after=cfg.tail_after)
    if cfg.m_init == "start":
        fitter.e_center = corpus_start(lm, recipe)[0]
    arr = fitter.arr
    precision = lm.precision
    content = content_config(cfg, precision)
    info = {
        "format": K.FORMAT, "model": lm.identity, "precision": precision,
        "arrangement": {**arr.to_dict(), "prefix_spec": recipe.prefix},
        "recipe": dataclasses.asdict(recipe), "d_model": lm.d_model,
        "config": content, "fingerprint": fingerprint(content),
    }
    return fitter, info


def _texts(cfg: BuildConfig, lm, fitter, root: Path, rank: int):
    """(each text's row texts (text_units), source stats, newly generated texts), every
    row's text checked to fit the model."""
    generate, generated = _generator(lm, root, rank, cfg.wait_seconds)
    texts, text_stats = corpus_texts(cfg.sources, lm.tokenize, lm.detokenize, cfg.seed,
                                     generate)
    if not texts:
        raise C.ConfigError("the sources gave no texts (counts all 0?)")
    units = text_units(texts, cfg.text_chunk, lm.detokenize)
    for t in (u for us in units for u in us):
        try:
            fitter.check_length(len(t.token_ids))
        except ValueError as exc:
            hint = "" if cfg.text_chunk else "; text_chunk=C fits each text as e's of C tokens"
            raise C.ConfigError(f"{exc}{hint}") from None
    return units, text_stats, generated


def _write_start(cfg: BuildConfig, root: Path, rank: int, info: dict, have, generated: dict):
    """build.json (new corpus), config.yaml and the generated-texts cache (rank 0)."""
    if have is None:
        root.mkdir(parents=True, exist_ok=True)
        atomic_write_json(root / "build.json", info)
    if rank == 0:
        atomic_write_bytes(root / "config.yaml", C.dump_yaml(cfg).encode())
        if generated:
            old = json.loads((root / GENERATED).read_text()) if (
                root / GENERATED).exists() else {}
            atomic_write_json(root / GENERATED, {**old, **generated})


def _corpus_m(cfg: BuildConfig, lm, fitter, root: Path, rank: int, info: dict, warm, prog):
    """The shared m: rank 0 makes and saves it once, other ranks wait for it."""
    m_path = root / "m.safetensors"
    if not fitter.arr.uses_m:
        return None
    if not m_path.exists() and rank == 0:
        K.remove_stale_temps(root, m_path.name)
        m_fit, meta = shared_m(lm, cfg, fitter.recipe, warm, prog)
        K.save_m(root, m_fit, {"fingerprint": info["fingerprint"], "model": lm.identity,
                               **meta})
    elif not m_path.exists():
        prog.line("waiting for rank 0 to write m.safetensors")
        _wait_for(m_path, cfg.wait_seconds, "the shared m")
    m, m_meta = K.load_m(root)
    if m_meta.get("fingerprint") != info["fingerprint"]:
        raise C.ConfigError(f"{m_path} belongs to another build config; refusing to mix")
    return m.float()


def _chunk(lm, fitter, cfg: BuildConfig, root: Path, i: int, texts: list[Text], m, prog):
    """Fit (or keep) chunk i's shard and check (or keep) its pairs shard; returns (fitted
    table or None, 'fitted' | 'redone' | 'skipped' | 'pairs')."""
    state, why = K.check_shard(root, K.SHARDS, i)
    if state == "corrupt":
        moved = K.move_aside(root, K.SHARDS, i)
        prog.line(f"warning: shard {i} is corrupt ({why['why']}); moved aside as "
                  f"{', '.join(moved)} and redoing the chunk")
    table = None
    if state != "ok":
        K.remove_stale_temps(root / K.SHARDS, K.chunk_name(i))
        table = fit_chunk(lm, fitter, cfg, texts, m, prog.fit_cb(i))
        K.write_shard(root, K.SHARDS, i, table)
    pstate, pwhy = K.check_shard(root, K.PAIRS, i)
    if pstate == "corrupt":
        moved = K.move_aside(root, K.PAIRS, i)
        prog.line(f"warning: pairs shard {i} is corrupt ({pwhy['why']}); moved aside "
                  f"as {', '.join(moved)} and redoing it")
    if pstate != "ok":
        if table is None:
            table = pq.read_table(K.shard_paths(root, K.SHARDS, i)[0])
        K.remove_stale_temps(root / K.PAIRS, K.chunk_name(i))
        K.write_shard(root, K.PAIRS, i, chunk_pairs(lm, fitter.arr, cfg, i, table, m))
    if state == "ok":
        return None, "skipped" if pstate == "ok" else "pairs"
    return table, "redone" if state == "corrupt" else "fitted"


def _chunks(lm, fitter, cfg: BuildConfig, root: Path, units: list[list[Text]], m, rank: int,
            world: int, prog) -> dict:
    """Every chunk of this rank (chunk_size whole texts each, with all their text_units);
    returns counts of chunks fitted, skipped and redone."""
    n_chunks = math.ceil(len(units) / cfg.chunk_size)
    mine = [i for i in range(n_chunks) if i % world == rank]
    if cfg.order == "reverse":
        mine.reverse()
    size = cfg.chunk_size
    prog.start(sum(len(units[i * size:(i + 1) * size]) for i in mine))
    n = {"fitted": 0, "redone": 0, "skipped": 0, "pairs": 0}
    for j, i in enumerate(mine):
        chunk_units = units[i * size:(i + 1) * size]
        table, what = _chunk(lm, fitter, cfg, root, i, [u for us in chunk_units for u in us],
                             m, prog)
        n[what] += 1
        if what == "skipped":
            prog.skip(len(chunk_units))
        elif table is not None:
            prog.chunk_done(i, K.solved_counts(table), len(mine) - j - 1)
    prog.close()
    return {"chunks": n_chunks, "chunks_done": n["fitted"] + n["redone"],
            "chunks_skipped": n["skipped"], "chunks_redone": n["redone"]}


def _manifest(lm, root: Path, info: dict, n_texts: int, text_stats: dict, warm,
              n_chunks: int, uses_m: bool, chunked: bool) -> dict:
    """Scan the shards, write manifest.json (complete, or partial unless a complete one is
    there already) and return its counts with the rows' stats and pairs tables."""
    shards, pairs, missing = _scan(root, n_chunks)
    status = "complete" if not missing else "partial"
    man_path = root / "manifest.json"
    prior = None
    if man_path.exists():
        try:
            prior = json.loads(man_path.read_text()).get("status")
        except (OSError, ValueError):
            prior = None
    cols = ["text_id", "restart", "solved", "steps", "accuracy"] + (["parent_id"] if chunked
                                                                   else [])
    stats_tab = _concat([pq.read_table(root / x["path"], columns=cols) for x in shards
                         if x.get("path")])
    if stats_tab is None:   # no shard yet: zero counts of the same kinds
        stats_tab = pa.table({c: [] for c in cols})
    pairs_tab = _concat([pq.read_table(root / x["path"]) for x in pairs if x.get("path")])
    n_rows = stats_tab.num_rows
    counts = {"texts_planned": n_texts, "rows": n_rows, **K.solved_counts(stats_tab),
              "pairs": pairs_tab.num_rows if pairs_tab is not None else 0,
              "chunks": n_chunks, "chunks_missing": len(missing),
              **{f"sources_{k}": v for k, v in text_stats.items()}}
    if status == "complete" or prior != "complete":
        man = {**{k: info[k] for k in ("format", "model", "precision", "arrangement",
                                        "recipe", "d_model", "config", "fingerprint")},
               "status": status, "m": "m.safetensors" if uses_m else None,
               "h_lm": "nats; " + _h_lm_how(lm), "counts": counts,
               "warm_text_ids": [t.text_id for t in warm],
               "shards": shards, "pairs": pairs, "missing_chunks": missing}
        atomic_write_json(man_path, man)
    return {"status": status, "counts": counts, "missing": missing,
            "tables": (stats_tab, pairs_tab)}


def build(cfg: BuildConfig, lm=None) -> dict:
    """Build or resume the corpus of `cfg` (lm: an already loaded model, for tests)."""
    t_start = time.time()
    rank, world = _rank_world()
    root = Path(cfg.out)
    have = _check_directory(root)
    check_sources(cfg.sources)
    old_threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        lm = _load_lm(cfg) if lm is None else lm
        fitter, info = _setup(cfg, lm)
        if have is not None:
            _refuse_if_different(root, have, info)
        units, text_stats, generated = _texts(cfg, lm, fitter, root, rank)
        # the m warm-up and the encoder's starts see what the rows fit: chunks, if text_chunk
        texts = [u for us in units for u in us]
        starts = encoded(cfg, lm, texts) if cfg.init_from else None
        # Nothing is written before the config, the model and the sources have been accepted.
        _write_start(cfg, root, rank, info, have, generated)
        prog = Progress(rank, world, 0, cfg.progress_seconds)
        for k, v in text_stats.items():
            prog.line(f"sources: {k}: {v}")
        warm = warm_set(cfg, texts)
        m = _corpus_m(cfg, lm, fitter, root, rank, info, warm, prog)
        if cfg.init_from:
            encoder_starts(fitter, cfg, texts, m, prog, starts)
        t_chunks = time.time()
        chunks = _chunks(lm, fitter, cfg, root, units, m, rank, world, prog)
        chunk_seconds = time.time() - t_chunks
        man = _manifest(lm, root, info, len(units), text_stats, warm, chunks["chunks"],
                        fitter.arr.uses_m, bool(cfg.text_chunk))
        return _summary(lm, root, man, chunks, rank, world, prog, time.time() - t_start,
                        chunk_seconds)
    finally:
        if cfg.threads:
            torch.set_num_threads(old_threads)


def _summary(lm, root: Path, man: dict, chunks: dict, rank: int, world: int, prog,
             secs: float, chunk_seconds: float) -> dict:
    """The build's JSON summary (plus `_tables`: the rows' stats and the pairs)."""
    c = man["counts"]
    return {
        "corpus": str(root), "status": man["status"], "texts": c["texts"],
        "texts_planned": c["texts_planned"], "rows": c["rows"], "solved": c["solved_texts"],
        "solved_frac": round(c["solved_texts"] / max(1, c["texts"]), 4),
        **{k: c[k] for k in ("text_chunks", "text_chunks_solved") if k in c},
        "pairs": c["pairs"], **chunks, "missing_chunks": len(man["missing"]),
        "rank": rank, "world_size": world, "model": lm.name, "seconds": round(secs, 2),
        "chunk_seconds": round(chunk_seconds, 2), "texts_fitted": prog.done,
        "texts_per_hour": round(prog.done / secs * 3600, 1) if secs > 0 else 0.0,
        "_tables": man["tables"],
    }


def _concat(tables):
    return pa.concat_tables(tables) if tables else None


def _h_lm_how(lm) -> str:
    bos = lm.tokenizer.bos_token_id
    return (f"first token scored from BOS id {bos}" if bos is not None
            else "no BOS token: first token unscored")


def _log_run(mr, summary: dict, root: Path):
    stats_tab, pairs_tab = summary["_tables"]
    mr.metrics({f"data_gen/{k}": summary[k] for k in (
        "texts", "rows", "solved", "solved_frac", "pairs", "chunks_done", "chunks_skipped",
        "chunks_redone", "seconds", "texts_per_hour", "text_chunks", "text_chunks_solved")
        if k in summary})
    if pairs_tab is not None and pairs_tab.num_rows:
        for col in ("linear_min_acc", "bezier_min_acc", "length_ratio", "cosine_distance"):
            v = pairs_tab.column(col).to_pylist()
            mr.metrics({f"data_gen/pairs_{col}_mean": sum(v) / len(v)})
    if stats_tab is not None and stats_tab.num_rows:
        import matplotlib  # lazy: matplotlib (~1 s) is needed only to draw plots
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # lazy: matplotlib (~1 s) is needed only to draw plots
        steps = stats_tab.column("steps").to_pylist()
        ok = stats_tab.column("solved").to_pylist()
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.hist([s for s, o in zip(steps, ok) if o], bins=30, alpha=0.8, label="solved")
        ax.hist([s for s, o in zip(steps, ok) if not o], bins=30, alpha=0.8, label="unsolved")
        ax.set_xlabel("fitting steps")
        ax.set_ylabel("rows")
        ax.set_title(f"{root.name}: steps per row")
        ax.legend()
        fig.tight_layout()
        mr.figure(fig, "data_gen_steps.png")
        plt.close(fig)
    for name in ("manifest.json", "config.yaml"):
        mr.artifact(root / name)


def main(argv=None) -> int:
    cfg = C.parse_cli(BuildConfig, __doc__, argv, prog="python -m data_gen.build")
    if cfg is None:
        return 2
    try:
        _rank_world()
    except C.ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    run_name = f"build-{Path(cfg.out).name}"
    try:
        with mlflow_run("data_gen", cfg, run_name=run_name, enabled=cfg.mlflow) as mr:
            summary = build(cfg)
            _log_run(mr, summary, Path(cfg.out))
    except (C.ConfigError, ModelLoadError, SourceError, K.CorpusError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    summary.pop("_tables", None)
    C.print_summary(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
