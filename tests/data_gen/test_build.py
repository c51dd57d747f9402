"""data_gen.build / verify / corpus on the tiny in-process model (configs/data_gen/tiny.yaml).

One reference corpus is built in-process; the other tests compare against it: a build that is
SIGKILLed at random moments and rerun, two ranks, a truncated shard found by verify and redone.
Every build uses one torch thread, so rows are bit-identical between processes.
"""
import dataclasses
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from data_gen import build as B
from data_gen import corpus as K
from data_gen import verify as V
from proto import config as C

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "configs" / "data_gen" / "tiny.yaml"
PY = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv").exists() else sys.executable


def _cfg(out, *over):
    return C.load(B.BuildConfig, TINY, [f"out={out}", "threads=1", "mlflow=false", *over])


def _rows(corpus) -> list[tuple]:
    t = K.read_table(corpus, K.SHARDS, ["text_id", "restart", "token_ids", "e"])
    rows = sorted(zip(*(t.column(c).to_pylist() for c in ("text_id", "restart", "token_ids",
                                                            "e"))))
    return [(a, b, tuple(c), tuple(e)) for a, b, c, e in rows]


def _env(**kw):
    env = dict(os.environ, PROTOSPACE_NO_MLFLOW="1", OMP_NUM_THREADS="1",
               TOKENIZERS_PARALLELISM="false", PYTHONPATH=str(ROOT))
    env.update(kw)
    return env


@pytest.fixture(scope="module")
def ref(tmp_path_factory, tiny):
    out = tmp_path_factory.mktemp("ref") / "corpus"
    summary = B.build(_cfg(out), lm=tiny)
    return out, summary


def test_tiny_build_writes_a_complete_loadable_corpus(ref, tmp_path):
    import datasets
    out, s = ref
    assert s["status"] == "complete" and s["texts"] == s["texts_planned"] == 10
    assert s["rows"] > s["texts"] and s["pairs"] >= 1 and s["solved"] >= 8
    man = K.read_manifest(out)
    assert man["status"] == "complete" and man["model"]["name"] == "tiny-random"
    assert man["arrangement"] == {"name": "e_m", "prefix": [0], "prefix_spec": "sink"}
    assert man["d_model"] == 128 and man["recipe"]["lr"] == 0.05
    assert len(man["shards"]) == len(man["pairs"]) == 4
    assert sum(x["rows"] for x in man["shards"]) == s["rows"]
    assert (out / "m.safetensors").exists() and (out / "config.yaml").exists()
    assert K.load_m(out)[0].shape == (128,)
    # plain datasets, no project code
    ds = datasets.load_dataset("parquet", data_files=str(out / "shards" / "*.parquet"),
                               split="train", cache_dir=str(tmp_path / "hf"))
    assert len(ds) == s["rows"] and len(ds[0]["e"]) == 128
    assert {"text_id", "source", "context_id", "restart", "text", "token_ids", "n_tokens", "e",
            "accuracy", "c_tokens", "h_lm", "loss", "steps", "seconds"} <= set(ds.column_names)
    assert set(ds["source"]) == {"random-words", "britannica"}
    assert all(n == len(t) for n, t in zip(ds["n_tokens"], ds["token_ids"]))
    # the project's reader
    rc = K.read_corpus(out, cache_dir=str(tmp_path / "hf"))
    assert len(rc) == s["rows"]
    pairs = K.read_pairs(out, cache_dir=str(tmp_path / "hf"))
    assert len(pairs) == s["pairs"]
    p = pairs[0]
    assert p["restart_a"] < p["restart_b"] and 0 <= p["linear_min_acc"] <= 1
    assert 0 <= p["bezier_min_acc"] <= p["bezier_mean_acc"] <= 1 and p["length_ratio"] >= 1
    keys = [(a, b) for a, b in zip(ds["text_id"], ds["restart"])]
    assert len(set(keys)) == len(keys)


def test_sigkill_at_random_moments_then_resume_equals_uninterrupted(ref, tmp_path):
    out = tmp_path / "corpus"
    cmd = [PY, "-m", "data_gen.build", "--config", str(TINY), f"out={out}", "threads=1",
           "mlflow=false"]
    seed = int.from_bytes(os.urandom(4), "little")
    rng = random.Random(seed)
    # kill 1: somewhere after the warm-up starts; kill 2: somewhere after a chunk finished
    kills = []
    for trigger in ("shared m (joint): fitting", "done |"):
        proc = subprocess.Popen(cmd, cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 60
        for line in proc.stderr:
            if trigger in line or time.time() > deadline:
                break
        delay = rng.uniform(0.0, 0.8)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
        present = sorted(p.name for p in out.rglob("*") if p.is_file())
        kills.append((trigger, round(delay, 2), present))
    why = f"seed {seed}, kills (trigger, delay, files left) {kills}"
    print(why)
    assert not (out / "manifest.json").exists() or \
        K.read_manifest(out)["status"] == "partial", why
    r = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    s = json.loads(r.stdout.strip().splitlines()[-1])
    assert s["status"] == "complete" and s["chunks"] == 4, why
    assert {"corpus", "texts", "rows", "solved", "pairs", "seconds"} <= set(s)
    got, want = _rows(out), _rows(ref[0])
    assert len(got) == len({(a, b) for a, b, _, _ in got}), f"duplicate rows ({why})"
    assert got == want, f"resumed corpus differs from the uninterrupted one ({why})"
    assert [x for x in (out / "shards").iterdir() if x.name.endswith(".tmp")] == []
    assert K.read_table(out, K.PAIRS).equals(K.read_table(ref[0], K.PAIRS)), why


def test_two_ranks_split_chunks_without_overlap(ref, tmp_path, tiny, monkeypatch):
    out = tmp_path / "corpus"
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")  # rank 1 alone waits for rank 0's m, then gives up
    with pytest.raises(C.ConfigError, match="waited"):
        B.build(_cfg(out, "wait_seconds=1"), lm=tiny)
    monkeypatch.setenv("RANK", "0")
    s0 = B.build(_cfg(out), lm=tiny)
    assert s0["status"] == "partial" and s0["chunks_done"] == 2
    assert K.read_manifest(out)["missing_chunks"] == [1, 3]
    monkeypatch.setenv("RANK", "1")
    s1 = B.build(_cfg(out), lm=tiny)
    assert s1["status"] == "complete" and s1["chunks_done"] == 2 and s1["chunks_skipped"] == 0
    assert (s1["rows"], s1["texts"], s1["pairs"]) == (ref[1]["rows"], 10, ref[1]["pairs"])
    assert _rows(out) == _rows(ref[0])
    assert K.read_manifest(out)["status"] == "complete"


def test_verify_finds_a_truncated_shard_and_resume_redoes_it(ref, tmp_path, tiny, capsys):
    out = tmp_path / "corpus"
    shutil.copytree(ref[0], out)
    assert V.main([str(out), "sample=3"]) == 0
    s = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert s["ok"] and s["decode"]["sampled"] == 3 and s["decode"]["max_abs_diff"] < 1e-6
    shard = out / "shards" / "chunk-00002.parquet"
    good = shard.read_bytes()
    shard.write_bytes(good[: len(good) // 2])
    assert V.main([str(out), "sample=0"]) == 1
    s = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert not s["ok"] and s["corrupt"] == 1
    assert s["problems"][0]["shard"] == "shards/chunk-00002.parquet"
    r = B.build(_cfg(out), lm=tiny)
    assert r["chunks_redone"] == 1 and r["chunks_done"] == 1 and r["status"] == "complete"
    assert "moved aside" in capsys.readouterr().err
    assert (out / "shards" / "chunk-00002.parquet.corrupt").read_bytes() == good[: len(good) // 2]
    assert _rows(out) == _rows(ref[0])  # the redone chunk is bit-identical (e included)
    assert V.main([str(out), "sample=0"]) == 0


def test_a_different_config_is_refused(ref, tiny):
    with pytest.raises(C.ConfigError, match="different model/config.*lr"):
        B.build(_cfg(ref[0], "recipe_overrides.lr=0.1"), lm=tiny)


def test_tail_restarts_are_a_speed_setting_a_build_may_resume_with(ref, tiny):
    """Tail restarts (on by default) only back up stragglers with more seeds of the same
    recipe: they are not part of a corpus's fingerprint, so a corpus resumes with any value."""
    base = B.content_config(_cfg(ref[0]), "float32")
    assert "tail_restarts" not in base and "tail_after" not in base
    assert B.content_config(_cfg(ref[0], "tail_restarts=0", "tail_after=3"), "float32") == base
    assert B.build(_cfg(ref[0], "tail_restarts=0"), lm=tiny)["status"] == "complete"
    assert B.BuildConfig().tail_restarts > 0


def test_a_recipe_that_resolves_differently_is_refused(ref, tiny, monkeypatch):
    """Same config, but the recipe's name now means other values (a new version's default)."""
    from proto import fit
    name = B._recipe(_cfg(ref[0])).name
    monkeypatch.setitem(fit.RECIPES, name, dataclasses.replace(fit.RECIPES[name], beta1=0.5))
    with pytest.raises(C.ConfigError, match="recipe.beta1: 0.9 .corpus. vs 0.5"):
        B.build(_cfg(ref[0]), lm=tiny)


def test_bad_config_key_is_one_line_exit_2(tmp_path, capsys):
    assert B.main(["--config", str(TINY), f"out={tmp_path / 'c'}", "bogus_key=1"]) == 2
    err = capsys.readouterr().err.strip()
    assert "unknown key" in err and "bogus_key" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize("content,name,msg", [
    (b"fine line\n\xff\xfe not utf-8\n", "bad.txt", "not UTF-8"),
    (b'{"text": "ok"}\nnot json\n', "bad.jsonl", "not valid JSON"),
    (None, "missing.txt", "no file matches|cannot read|not a file"),
])
def test_bad_files_source_is_a_clear_error(tmp_path, capsys, content, name, msg):
    f = tmp_path / name
    if content is not None:
        f.write_bytes(content)
    src = f"sources=[{{name: files, paths: [{f}], lengths: [4], count: 2}}]"
    assert B.main(["--config", str(TINY), f"out={tmp_path / 'c'}", "mlflow=false", src]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and len(err.splitlines()) == 1
    assert re.search(msg, err), err


def test_files_source_texts_skip_empty_and_have_contexts(tmp_path, tiny):
    from data_gen.texts import SourceConfig, corpus_texts
    (tmp_path / "a.txt").write_text("first line of text here\n\n   \nsecond one, also long\n")
    (tmp_path / "b.jsonl").write_text('{"text": "a json record with words"}\n{"text": ""}\n')
    src = SourceConfig(name="files", paths=[str(tmp_path / "*.txt"), str(tmp_path / "b.jsonl")],
                       count=10, lengths=[6])
    texts, stats = corpus_texts([src], tiny.tokenize, tiny.detokenize, seed=0)
    assert stats["empty"] == 3 and all(len(t.token_ids) == 6 for t in texts)
    assert len({t.text_id for t in texts}) == len(texts) == 10
    assert {t.context_id.split(":")[1] for t in texts} == {"a.txt", "b.jsonl"}
    again, _ = corpus_texts([src], tiny.tokenize, tiny.detokenize, seed=0)
    assert [t.text_id for t in again] == [t.text_id for t in texts]


def test_unknown_source_and_every_data_gen_yaml_parses(tmp_path):
    with pytest.raises(C.ConfigError, match="unknown source"):
        C.load(B.BuildConfig, TINY, ["sources=[{name: nope}]"])
    for y in sorted((ROOT / "configs" / "data_gen").glob("*.yaml")):
        cfg = C.load(B.BuildConfig, y)
        assert cfg.sources and cfg.out


def test_generated_source_groups_continuations_by_context_and_resumes_from_cache(
        tmp_path, tiny, monkeypatch):
    out = tmp_path / "gen"
    src = ("sources=[{name: generated, context_source: britannica, count: 2, lengths: [6], "
           "continuations: 3}]")
    s = B.build(_cfg(out, src, "restart_fraction=0", "warm_texts=2", "warm_steps=5"), lm=tiny)
    assert s["status"] == "complete" and s["texts"] == 6
    t = K.read_table(out, K.SHARDS, ["source", "context_id", "token_ids"])
    ctx = t.column("context_id").to_pylist()
    assert set(t.column("source").to_pylist()) == {"generated"}
    assert sorted(ctx.count(c) for c in set(ctx)) == [3, 3]
    assert all(len(ids) == 6 for ids in t.column("token_ids").to_pylist())
    assert (out / B.GENERATED).exists()
    # a resumed build must take the texts from the corpus, never sample them again
    import proto.decode
    monkeypatch.setattr(proto.decode, "sample_continuations",
                        lambda *a, **k: pytest.fail("resampled instead of using the cache"))
    shutil.rmtree(out / K.SHARDS)
    again = B.build(_cfg(out, src, "restart_fraction=0", "warm_texts=2", "warm_steps=5"), lm=tiny)
    assert again["texts"] == 6 and again["chunks_done"] >= 1


def test_generated_source_needs_a_context_source_with_documents():
    from data_gen.texts import SourceConfig
    with pytest.raises(ValueError, match="context_source"):
        SourceConfig(name="generated", context_source="random-words")


@pytest.mark.parametrize("m_init", ["random", "rowmean"])
def test_shared_m_can_be_random_or_the_mean_of_warm_m(tmp_path, tiny, m_init):
    out = tmp_path / m_init
    s = B.build(_cfg(out, f"m_init={m_init}", "warm_steps=20",
                     "sources=[{name: random-words, count: 3, lengths: [5]}]"), lm=tiny)
    m, meta = K.load_m(out)
    assert s["status"] == "complete" and meta["m_init"] == m_init
    assert m.shape == (tiny.d_model,) and bool(m.abs().sum() > 0)
    assert ("warm_solved" in meta) == (m_init == "rowmean")
    # every row of the corpus was fitted with this m frozen: re-decoding with it reproduces them
    from proto.arrangement import Arrangement
    from proto.decode import hits, one_pass
    man = K.read_manifest(out)
    t = K.read_table(out, K.SHARDS, ["token_ids", "e", "accuracy"])
    arr = Arrangement(man["arrangement"]["name"], man["arrangement"]["prefix"])
    import torch
    for ids, e, acc in zip(*(t.column(c).to_pylist() for c in ("token_ids", "e", "accuracy"))):
        pred = one_pass(tiny, arr, torch.tensor(e), m, len(ids))
        assert abs(hits(pred, torch.tensor([ids]))[0][0] - acc) < 1e-6


def test_a_second_process_in_reverse_order_completes_the_same_corpus(ref, tmp_path, tiny,
                                                                     capsys):
    out = tmp_path / "corpus"
    shutil.copytree(ref[0], out)
    for i in (1, 3):                          # two chunks left to do
        for p in K.shard_paths(out, K.SHARDS, i) + K.shard_paths(out, K.PAIRS, i):
            p.unlink(missing_ok=True)
    capsys.readouterr()
    s = B.build(_cfg(out, "order=reverse"), lm=tiny)
    done = [int(x) for x in re.findall(r"chunk (\d+) done", capsys.readouterr().err)]
    assert done == [3, 1] and s["chunks_done"] == 2
    assert s["status"] == "complete" and _rows(out) == _rows(ref[0])
    assert K.read_table(out, K.PAIRS).equals(K.read_table(ref[0], K.PAIRS))


def test_verify_logs_an_mlflow_run(ref, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)   # MLflow's artifacts go to ./mlartifacts
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/m.db")
    monkeypatch.delenv("PROTOSPACE_NO_MLFLOW", raising=False)
    assert V.main([str(ref[0]), "sample=2"]) == 0
    from mlflow import MlflowClient
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/m.db")
    runs = client.search_runs([client.get_experiment_by_name("data_gen").experiment_id])
    assert [r.info.run_name for r in runs] == ["verify"]
    assert runs[0].data.metrics["verify/ok"] == 1 and runs[0].data.metrics["verify/sampled"] == 2
    assert runs[0].data.params["corpus"] == str(ref[0])


# ---------------------------------------------------------------- text_chunk: e per C tokens

@pytest.fixture(scope="module")
def chunked(tmp_path_factory, tiny):
    """The tiny corpus with one e per 4 tokens: texts of 6, 8 and 10 tokens in 2-3 chunks."""
    out = tmp_path_factory.mktemp("chunked") / "corpus"
    return out, B.build(_cfg(out, "text_chunk=4"), lm=tiny)


def _chunk_rows(corpus) -> list[tuple]:
    cols = ["text_id", "restart", "token_ids", "e", "parent_id", "chunk", "span"]
    t = K.read_table(corpus, K.SHARDS, cols).to_pylist()
    return sorted(tuple(tuple(v) if isinstance(v, list) else v for v in (r[c] for c in cols))
                  for r in t)


def test_a_chunked_build_stores_chunks_that_tile_each_text(chunked, tiny, tmp_path):
    import datasets

    from data_gen.texts import corpus_texts
    from proto.solution import chunk_spans
    out, s = chunked
    texts, _ = corpus_texts(_cfg(out).sources, tiny.tokenize, tiny.detokenize, seed=0)
    spans = {t.text_id: [list(x) for x in chunk_spans(len(t.token_ids), 4)] for t in texts}
    assert s["status"] == "complete" and s["texts"] == s["texts_planned"] == len(texts) == 10
    assert s["text_chunks"] == sum(map(len, spans.values())) == 22
    rows = K.read_table(out).to_pylist()
    by: dict[str, dict[int, dict]] = {}
    for r in rows:
        by.setdefault(r["parent_id"], {})[r["chunk"]] = r
    for t in texts:   # each text's chunks, in chunk order, are its tokens
        cs = [by[t.text_id][k] for k in sorted(by[t.text_id])]
        assert [c["span"] for c in cs] == spans[t.text_id]
        assert [tok for c in cs for tok in c["token_ids"]] == t.token_ids
        for c in cs:
            a, b = c["span"]
            assert c["text_id"] == f"{t.text_id}[{a}:{b}]" and c["n_tokens"] == b - a
            assert c["parent_n_tokens"] == len(t.token_ids) and c["context_id"] == t.context_id
    keys = [(r["text_id"], r["restart"]) for r in rows]
    assert len(set(keys)) == len(keys)
    done = {r["text_id"] for r in rows if r["solved"]}
    assert s["text_chunks_solved"] == len(done)
    assert s["solved"] == sum({c["text_id"] for c in cs.values()} <= done for cs in by.values())
    assert K.read_manifest(out)["counts"]["text_chunks"] == 22
    # connectivity is checked between solved restarts of one chunk
    assert s["pairs"] >= 1
    for p in K.read_table(out, K.PAIRS).to_pylist():
        assert {(p["text_id"], p["restart_a"]), (p["text_id"], p["restart_b"])} <= {
            (r["text_id"], r["restart"]) for r in rows if r["solved"]}
    ds = datasets.load_dataset("parquet", data_files=str(out / "shards" / "*.parquet"),
                               split="train", cache_dir=str(tmp_path / "hf"))
    assert len(ds) == s["rows"] and ds[0]["span"][1] - ds[0]["span"][0] == ds[0]["n_tokens"]


def test_a_chunked_build_splits_over_ranks_and_resumes_without_refitting(chunked, tmp_path,
                                                                          tiny, monkeypatch):
    out = tmp_path / "corpus"
    monkeypatch.setenv("WORLD_SIZE", "2")
    for rank in ("0", "1"):
        monkeypatch.setenv("RANK", rank)
        s = B.build(_cfg(out, "text_chunk=4"), lm=tiny)
    assert s["status"] == "complete" and s["chunks_done"] == 2
    assert _chunk_rows(out) == _chunk_rows(chunked[0])
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("RANK", "0")
    for p in K.shard_paths(out, K.SHARDS, 2) + K.shard_paths(out, K.PAIRS, 2):
        p.unlink()
    s = B.build(_cfg(out, "text_chunk=4"), lm=tiny)
    assert (s["chunks_done"], s["chunks_skipped"]) == (1, 3)
    assert _chunk_rows(out) == _chunk_rows(chunked[0])   # the redone chunk is bit-identical
    monkeypatch.setattr(B.Fitter, "fit", lambda *a, **k: pytest.fail("refitted a chunk"))
    again = B.build(_cfg(out, "text_chunk=4"), lm=tiny)
    assert (again["chunks_done"], again["chunks_skipped"]) == (0, 4)
    want = chunked[1]
    assert [again[k] for k in ("texts", "solved", "text_chunks", "text_chunks_solved")] == [
        want[k] for k in ("texts", "solved", "text_chunks", "text_chunks_solved")]


def test_verify_reports_a_chunked_corpus_per_whole_text(chunked, capsys):
    assert V.main([str(chunked[0]), "sample=3"]) == 0
    cap = capsys.readouterr()
    d = json.loads(cap.out.strip().splitlines()[-1])["decode"]
    assert d["texts_sampled"] == 3 and d["texts_untiled"] == 0 and d["mismatches"] == 0
    assert d["texts_exact"] == d["texts_solved_decoded"] == d["texts_recorded_solved"]
    assert d["sampled"] >= 6 and d["solved_decoded"] == d["recorded_solved"]
    assert "re-decoded 3 whole texts" in cap.err


def test_verify_judges_a_text_whole_only_when_its_chunks_tile_it():
    row = {"parent_id": "p", "parent_n_tokens": 8, "measured": 1.0, "solved": True}
    whole = [{**row, "chunk": 0, "span": [0, 4], "n_tokens": 4},
             {**row, "chunk": 1, "span": [4, 8], "n_tokens": 4}]
    assert V.whole_texts(whole)["texts_exact"] == 1
    for broken in (whole[:1], [whole[0], {**whole[1], "chunk": 2}],
                   [whole[0], {**whole[1], "span": [5, 8], "n_tokens": 3}]):
        got = V.whole_texts(broken)
        assert (got["texts_untiled"], got["texts_exact"]) == (1, 0)
    miss = [whole[0], {**whole[1], "measured": 0.75}]
    assert V.whole_texts(miss)["texts_solved_decoded"] == 0


def test_text_chunk_0_keeps_the_fingerprint_of_older_corpora(tmp_path):
    """Corpora built before text_chunk existed resume: the key is left out while it is 0."""
    plain = B.content_config(_cfg(tmp_path / "c"), "float32")
    assert "text_chunk" not in plain
    # the tiny config's fingerprint as computed before text_chunk was added
    assert B.fingerprint(plain) == \
        "0fb31765efa170eb7830f36c2f8a2b2c840f0e6b424240329329a737f56ccca2"
    chunks = B.content_config(_cfg(tmp_path / "c", "text_chunk=4"), "float32")
    assert chunks["text_chunk"] == 4 and B.fingerprint(chunks) != B.fingerprint(plain)


def test_a_chunked_corpus_and_a_plain_one_do_not_mix(ref, chunked, tiny):
    for out, over, msg in ((chunked[0], "text_chunk=3", "text_chunk: 4 .corpus. vs 3"),
                           (chunked[0], "text_chunk=0", "text_chunk: 4 .corpus. vs None"),
                           (ref[0], "text_chunk=4", "text_chunk: None .corpus. vs 4")):
        with pytest.raises(C.ConfigError, match=msg):
            B.build(_cfg(out, over), lm=tiny)


def test_negative_text_chunk_is_one_line_exit_2(tmp_path, capsys):
    assert B.main(["--config", str(TINY), f"out={tmp_path / 'c'}", "text_chunk=-1"]) == 2
    err = capsys.readouterr().err.strip()
    assert "text_chunk must be >= 0" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "c").exists()


def test_text_chunk_fits_texts_past_the_decoders_context(tmp_path, tiny, capsys):
    over = ["sources=[{name: random-words, count: 1, lengths: [520]}]", "m_init=random",
            "pairs_per_chunk=0", "restart_fraction=0", "recipe_overrides.max_steps=3"]
    assert B.main(["--config", str(TINY), f"out={tmp_path / 'a'}", "mlflow=false",
                   "threads=1", *over]) == 2
    err = capsys.readouterr().err.strip()
    assert "512" in err and "text_chunk=C" in err and len(err.splitlines()) == 1
    s = B.build(_cfg(tmp_path / "b", *over, "text_chunk=260"), lm=tiny)
    assert (s["status"], s["texts"], s["text_chunks"], s["rows"]) == ("complete", 1, 2, 2)
    spans = K.read_table(tmp_path / "b", columns=["span"]).column("span").to_pylist()
    assert sorted(spans) == [[0, 260], [260, 520]]


def test_readers_see_a_chunked_corpus_as_short_texts(chunked):
    """encoder.data and eval.locality read a chunked corpus unchanged: one text per chunk."""
    from encoder.data import corpus_examples
    from eval.locality import load_rows
    out, s = chunked
    t = K.read_table(out, columns=["text_id", "token_ids"])
    ids = dict(zip(t.column("text_id").to_pylist(), t.column("token_ids").to_pylist()))
    xs = corpus_examples(out)
    assert len(xs) == s["text_chunks"] and all(x.token_ids == ids[x.text_id] for x in xs)
    rows, total = load_rows(out, K.read_manifest(out), solved_only=False)
    assert total == s["rows"] and len(set(rows.text_ids)) == s["text_chunks"]


def test_init_from_starts_each_chunk_at_its_own_encoding(tmp_path, tiny, monkeypatch):
    """The encoder is asked for the e of every chunk (what the rows fit), not of whole texts."""
    import torch
    cfg = _cfg(tmp_path / "c", "text_chunk=4", "m_init=random", "init_from=fake",
               "pairs_per_chunk=0", "sources=[{name: random-words, count: 2, lengths: [6]}]")
    m, _ = B.shared_m(tiny, cfg, B._recipe(cfg), [], B.Progress(0, 1, 0, 1))
    asked = []

    def starts(spec, lm, toks):
        asked.extend(toks)
        return torch.zeros(len(toks), lm.d_model), m.cpu(), {"path": spec, "step": 0}
    monkeypatch.setattr(B, "text_starts", starts)
    s = B.build(cfg, lm=tiny)
    assert s["status"] == "complete" and (s["texts"], s["text_chunks"]) == (2, 4)
    assert sorted(map(len, asked)) == [2, 2, 4, 4]
