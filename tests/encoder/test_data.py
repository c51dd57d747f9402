"""The held-out split and the deterministic training stream."""
from encoder.config import DataConfig
from encoder.data import Example, Split, held_out


def _ex(i, ctx=None, prefix="t"):
    return Example(f"{prefix}{i}", "s", ctx or f"c{i // 3}", [i, i + 1, 7], f"text {i}")


def test_no_heldout_text_or_context_is_trained_on():
    cfg = DataConfig(corpus="x", heldout_percent=30, seed=1)
    corpus = [_ex(i) for i in range(90)]
    # raw windows: same ids as some corpus texts, others new, one equal in tokens only
    raw = [_ex(i) for i in range(0, 90, 2)] + [_ex(100 + i, ctx=f"c{i}") for i in range(30)]
    s = Split(cfg, corpus, raw, [3])
    held_ids = {x.text_id for x in s.heldout}
    held_ctx = {x.context_id for x in s.heldout}
    assert 0 < len(s.heldout) < len(corpus) and s.train_raw
    for x in s.train_corpus + s.train_raw:
        assert x.text_id not in held_ids and x.context_id not in held_ctx
        assert not held_out(x, cfg)
    # the training stream only ever yields training texts
    seen = {s.example(p).text_id for p in range(500)}
    assert not seen & held_ids


def test_stream_is_a_function_of_position_and_independent_of_ranks():
    cfg = DataConfig(corpus="x", heldout_percent=10, seed=3, raw_fraction=0.5)
    corpus = [_ex(i) for i in range(40)]
    raw = [_ex(i, ctx=f"r{i}", prefix="raw") for i in range(40)]
    a, b = Split(cfg, corpus, raw, [3]), Split(cfg, corpus, raw, [3])
    one = [x.text_id for micro in range(4) for x in a.micro_batch(5, micro, 0, 1, 2, 4)]
    two = [x.text_id for micro in range(2) for r in range(2)
           for x in b.micro_batch(5, micro, r, 2, 2, 2)]
    assert one == two
    kinds = {a.example(p).text_id.startswith("raw") for p in range(200)}
    assert kinds == {True, False}  # both the corpus and the raw stream are used


def test_heldout_share_follows_contexts_and_not_the_raw_pool():
    """A big raw pool sharing the corpus's contexts must not sweep the corpus into held-out."""
    cfg = DataConfig(corpus="x", heldout_percent=10, seed=0)
    corpus = [_ex(i) for i in range(600)]  # 200 contexts of 3 texts
    raw = [_ex(1000 + i, ctx=f"c{i % 200}", prefix="raw") for i in range(5000)]
    with_raw, alone = Split(cfg, corpus, raw, [3]), Split(cfg, corpus, [], [3])
    assert [x.text_id for x in with_raw.heldout] == [x.text_id for x in alone.heldout]
    held_ctx = {x.context_id for x in with_raw.heldout}
    assert 0.05 < len(held_ctx) / 200 < 0.15
    assert all(x.context_id in held_ctx for x in with_raw.heldout_raw)


def _ex_len(i, n, prefix="t"):
    return Example(f"{prefix}{i}", "s", f"c{i}", list(range(i, i + n)), f"text {i}")


def test_curriculum_adds_lengths_at_their_steps():
    cfg = DataConfig(corpus="x", heldout_percent=10, seed=2, curriculum=[0, 3])
    corpus = [_ex_len(i, 4 if i % 2 else 8) for i in range(80)]
    raw = [_ex_len(100 + i, 4 if i % 2 else 8, prefix="raw") for i in range(80)]
    s = Split(cfg, corpus, raw, [4, 8])
    early = {x.n for step in range(3) for x in s.micro_batch(step, 0, 0, 1, 16, 1)}
    late = {x.n for step in range(3, 8) for x in s.micro_batch(step, 0, 0, 1, 16, 1)}
    assert early == {4} and late == {4, 8}
    # still one stream whatever the number of ranks
    two = [x.text_id for r in range(2) for x in s.micro_batch(1, 0, r, 2, 8, 1)]
    assert two == [x.text_id for x in s.micro_batch(1, 0, 0, 1, 16, 1)]


def test_curriculum_is_validated():
    import pytest
    for bad in ([1, 3], [0, 5, 2]):
        with pytest.raises(ValueError, match="curriculum"):
            DataConfig(corpus="x", curriculum=bad)
    with pytest.raises(ValueError, match="one step per length"):
        DataConfig(corpus="x", lengths=[4, 8], curriculum=[0])
    corpus = [_ex_len(i, 8) for i in range(20)]
    with pytest.raises(ValueError, match="one step per length"):
        Split(DataConfig(corpus="x", curriculum=[0, 2]), corpus, [], [8])
    with pytest.raises(ValueError, match="no training texts of lengths"):
        Split(DataConfig(corpus="x", curriculum=[0, 2]), corpus, [], [4, 8])


def test_a_stream_takes_the_raw_share_and_is_rank_independent(tiny):
    """data.stream: the raw share of every batch comes from the never-repeating stream, the
    same global batch on 1 or 2 ranks; the corpus's held-out texts are banned from it."""
    from data_gen.stream import StreamConfig
    from encoder.data import make_stream
    cfg = DataConfig(corpus="x", heldout_percent=20, seed=3, raw_fraction=0.5,
                     stream=StreamConfig(prose=1, tokens=1, prose_sources=["britannica"]))
    corpus = [_ex(i) for i in range(40)]
    st = make_stream(cfg, [3], tiny, set())
    a = Split(cfg, corpus, [], [3], st)
    b = Split(cfg, corpus, [], [3], make_stream(cfg, [3], tiny, set()))
    one = [x.token_ids for micro in range(4) for x in a.micro_batch(5, micro, 0, 1, 2, 4)]
    two = [x.token_ids for micro in range(2) for r in range(2)
           for x in b.micro_batch(5, micro, r, 2, 2, 2)]
    assert one == two
    xs = [a.example(p) for p in range(300)]
    assert {x.source for x in xs} == {"s", "britannica", "tokens"}
    held = {tuple(x.token_ids) for x in a.heldout}
    assert held and held <= st.banned
    assert not held & {tuple(x.token_ids) for x in xs}


def test_stream_only_data_evaluates_on_heldout_stream_texts(tiny):
    from data_gen.stream import StreamConfig
    from encoder.data import make_stream
    cfg = DataConfig(stream=StreamConfig(prose=1, tokens=1, prose_sources=["britannica"]),
                     eval_texts=8)
    s = Split(cfg, [], [], [4, 6], make_stream(cfg, [4, 6], tiny, set()))
    kinds = {(x.source, x.n) for x in s.heldout}
    assert kinds == {("britannica", 4), ("britannica", 6), ("tokens", 4), ("tokens", 6)}
    assert len(s.eval_set(8)) == 8
