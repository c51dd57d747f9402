"""eval.encoder_recall: ranks of the own text's corpus rows for an encoder's e, on a tiny corpus
and a tiny encoder trained on it (the same m), checked against a brute-force numpy search."""
import json
from pathlib import Path

import numpy as np
import pytest

from eval import encoder_recall as R

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("sources=[{name: random-words, count: 12, lengths: [6]}, "
           "{name: britannica, count: 8, lengths: [6]}]")


@pytest.fixture(scope="module")
def made(tmp_path_factory, tiny):
    """A tiny corpus with a random m (restarts for half its texts) and an encoder trained one
    step on it."""
    from data_gen import build as B
    from encoder.config import EncoderConfig
    from encoder.train import Trainer
    from proto import config as C
    from proto.models import load_model
    d = tmp_path_factory.mktemp("encoder-recall")
    cfg = C.load(B.BuildConfig, ROOT / "configs/data_gen/tiny.yaml", [
        f"out={d / 'corpus'}", "threads=1", "mlflow=false", "m_init=random",
        "pairs_per_chunk=0", SOURCES, "chunk_size=20", "batch_size=32"])
    assert B.build(cfg, lm=tiny)["status"] == "complete"
    ecfg = C.load(EncoderConfig, ROOT / "configs/encoder/tiny.yaml", [
        f"out={d / 'enc'}", f"data.corpus={d / 'corpus'}", "mlflow=false", "threads=1",
        "train.steps=1", "train.eval_every=1", "train.save_every=1"])
    Trainer(ecfg, lm=load_model("tiny-random", device="cpu"), log=lambda s: None).run()
    return {"corpus": d / "corpus", "encoder": d / "enc" / "encoder.pt"}


def argv(made, out, *extra):
    return ["--corpus", str(made["corpus"]), "--checkpoint", str(made["encoder"]),
            f"out={out}", "mlflow=false", "threads=1", *extra]


def rows_of(corpus):
    from data_gen import corpus as K
    from eval.locality import load_rows
    return load_rows(corpus, K.read_manifest(corpus), True)[0]


def brute_rank(e_rows, row_text, q, code):
    """1 + the rows of other texts at an L2 distance <= the own text's nearest row."""
    d = np.linalg.norm(e_rows[None] - q[:, None], axis=2)
    own = np.where(row_text[None] == code[:, None], d, np.inf).min(1)
    return 1 + ((d <= own[:, None]) & (row_text[None] != code[:, None])).sum(1)


def test_run_writes_outputs_and_its_ranks_are_the_brute_force_ones(made, tmp_path, capsys):
    out = tmp_path / "r"
    assert R.main(argv(made, out, "ks=[0,2]")) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    rep = json.loads((out / "results.json").read_text())
    assert {p.name for p in out.iterdir()} == {"config.yaml", "results.json", "table.md",
                                               "encoder_recall.png"}
    assert "| encoder, K=2 |" in (out / "table.md").read_text()
    assert summary["queries"] == rep["queries"] == len(rep["query_ids"]) > 0
    assert set(summary["recall_at_1"]) == {"K=0", "K=2"}
    rows = rows_of(made["corpus"])
    # the queries are the texts the encoder did not train on: its held-out split
    from encoder import checkpoint as ckpt
    from proto.models import load_model
    ids, _ = R.seen_texts(ckpt.read(str(made["encoder"])), load_model("tiny-random"))
    assert rep["seen_left_out"] == len(set(rows.text_ids) & ids) > 0
    assert not set(rep["query_ids"]) & ids
    assert len(rep["query_ids"]) + rep["seen_left_out"] == rep["texts"]
    by = {(x["start"], x["k"]): x for x in rep["results"]}
    for x in rep["results"]:
        assert 0 <= x["recall_at_1"] <= x["recall_at_5"] <= 1
        assert all(1 <= r <= rep["rows"] for r in x["rank"])
    # chance: own rows / rows, averaged over the queries
    code = np.array([rows.text[rows.text_ids.index(t)] for t in rep["query_ids"]])
    own = np.bincount(rows.text)[code]
    assert by[("chance", None)]["recall_at_1"] == pytest.approx(np.mean(own / len(rows.text)))
    # e0 is one constant query: its ranks are a brute-force search's from that vector
    # (tiny-random has no learned start: e0 is the encoder's offset)
    blob = ckpt.read(str(made["encoder"]))
    e0 = blob["state"]["offset"].float().numpy()
    want = brute_rank(rows.e, rows.text, np.tile(e0, (len(code), 1)), code)
    assert by[("e0", 0)]["rank"] == want.tolist()
    assert by[("e0", 0)]["recall_at_1"] == pytest.approx(np.mean(want <= 1))


def test_own_solutions_rank_first_and_ranks_match_brute_force(made):
    rows = rows_of(made["corpus"])
    l2, ip = R.build_indexes(rows.e)
    first = {int(c): i for i, c in reversed(list(enumerate(rows.text)))}
    code = np.array(sorted(first))
    q = rows.e[[first[c] for c in code]]
    st = R.rank_stats(q, l2, ip, rows.text, code)
    assert st["recall_at_1"] == st["cosine_recall_at_1"] == 1.0
    assert st["median_rank"] == 1 and st["distance_ratio_median"] == 0.0
    rng = np.random.default_rng(0)
    q = rows.e[rng.integers(0, len(rows.e), 9)] + rng.normal(0, 0.5, (9, rows.e.shape[1]))
    code = rows.text[rng.integers(0, len(rows.e), 9)]
    got, _, _ = R.ranks(l2, rows.text, q.astype(np.float32), code)
    assert got.tolist() == brute_rank(rows.e, rows.text, q, code).tolist()


def _other_m(corpus, dst):
    import shutil

    from data_gen import corpus as K
    shutil.copytree(corpus, dst)
    m, meta = K.load_m(dst)
    K.save_m(dst, m + 1.0, meta)
    return dst


@pytest.mark.parametrize("case, says", [
    ("missing", "does not exist"),
    ("other_m", "another m"),
    ("unfinished", "did not finish"),
    ("ks=[]", "ks must be"),
    ("no_checkpoint", "not found"),
])
def test_bad_inputs_are_one_line_and_write_nothing(made, tmp_path, capsys, case, says):
    import shutil
    a = argv(made, tmp_path / "out")
    if case == "missing":
        a[1] = str(tmp_path / "nope")
    elif case == "other_m":
        a[1] = str(_other_m(made["corpus"], tmp_path / "c"))
    elif case == "unfinished":
        a[1] = str(shutil.copytree(made["corpus"], tmp_path / "c"))
        (tmp_path / "c" / "manifest.json").unlink()
    elif case == "no_checkpoint":
        a[3] = str(tmp_path / "none.pt")
    else:
        a.append(case)
    capsys.readouterr()
    assert R.main(a) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and says in err[0], err
    assert not (tmp_path / "out").exists()


def test_an_encoder_of_stream_texts_alone_has_seen_no_corpus_text(made):
    """(the shipped default's case: every text of a corpus is a query)"""
    import copy

    from encoder import checkpoint as ckpt
    blob = copy.deepcopy(ckpt.read(str(made["encoder"])))
    blob["config"]["data"].update(corpus="", raw=[])
    blob["config"]["data"]["stream"].update(prose=1.0)
    blob["config"]["m"] = "start"
    assert R.seen_texts(blob, lm=None) == (set(), set())
