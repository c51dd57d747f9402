"""The never-repeating text stream: a function of position, held-out contexts kept out."""
import numpy as np
import pytest

from proto.sources import SourceError
from data_gen.stream import StreamConfig, TextStream


def _held(cid: str) -> bool:
    import hashlib
    return hashlib.sha256(cid.encode()).digest()[0] < 40   # ~16 % of contexts


@pytest.fixture(scope="module")
def stream(tiny):
    cfg = StreamConfig(prose=1, tokens=1, words=1, prose_sources=["britannica"],
                       context_tokens=256)
    return TextStream(cfg, tiny.tokenize, tiny.detokenize, 0, _held, [6, 12], 257)


def test_every_position_is_one_fixed_text_of_the_asked_lengths(stream, tiny):
    cfg = StreamConfig(prose=1, tokens=1, words=1, prose_sources=["britannica"],
                       context_tokens=256)
    again = TextStream(cfg, tiny.tokenize, tiny.detokenize, 0, _held, [6, 12], 257)
    a = [stream.example(p).token_ids for p in range(60)]
    assert a == [again.example(p).token_ids for p in range(60)]
    assert {len(t) for t in a} == {6, 12}
    assert {len(stream.example(p, (6,)).token_ids) for p in range(30)} == {6}
    kinds = {stream.example(p).source for p in range(60)}
    assert kinds == {"britannica", "tokens", "random-words"}
    assert len({tuple(t) for t in a}) == len(a)          # nothing repeats


def test_training_prose_never_touches_a_heldout_context(stream):
    held = {t.context_id for t in stream.heldout("prose", 6, 10_000)}
    assert held and all(_held(c) for c in held)
    for p in range(300):
        x = stream.example(p)
        if x.source == "britannica":
            assert not _held(x.context_id)
    starts = stream.train_starts(12)
    assert not stream.held_tok[starts[:, None] + np.arange(12)].any()


def test_heldout_prose_is_cut_at_multiples_of_n_as_a_corpus_cuts_it(stream, tiny):
    from proto.sources import gutenberg_documents
    ids = tiny.tokenize(gutenberg_documents("britannica")[0][1])
    for t in stream.heldout("prose", 6, 50):
        s = int(t.context_id.rsplit(":", 1)[1]) * 256
        windows = {tuple(ids[i: i + 6]) for i in range(s, s + 256) if i % 6 == 0}
        assert tuple(t.token_ids) in windows


def test_random_tokens_follow_the_prose_frequencies(stream):
    ids = stream.batch_ids("tokens", 12, 4000, "x").ravel()
    kept = stream.ids[(~stream.held_tok) & (stream.ids >= 0)]
    top = np.bincount(kept).argmax()
    assert abs((ids == top).mean() - (kept == top).mean()) < 0.02
    assert set(np.unique(ids)) <= set(np.unique(kept))


def test_banned_texts_are_never_drawn_and_bad_configs_are_refused(tiny):
    cfg = StreamConfig(prose=1, prose_sources=["britannica"], context_tokens=256)
    s = TextStream(cfg, tiny.tokenize, tiny.detokenize, 0, _held, [6], 257)
    first = tuple(s.example(0).token_ids)
    s.banned.add(first)
    assert tuple(s.example(0).token_ids) != first
    with pytest.raises(SourceError, match="no kind"):
        TextStream(StreamConfig(), tiny.tokenize, tiny.detokenize, 0, _held, [6], 257)
    with pytest.raises(ValueError, match="prose_sources"):
        StreamConfig(prose=1, prose_sources=["hub"])
    with pytest.raises(SourceError, match="sampler"):
        TextStream(StreamConfig(continuations=1, prose_sources=["britannica"]),
                   tiny.tokenize, tiny.detokenize, 0, _held, [6], 257)
