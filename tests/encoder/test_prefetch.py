"""Batches prepared ahead on a background thread: the same batches in the same order as made
on demand, worker errors raised in the consumer, no thread left behind."""
import threading

import pytest

from encoder.prefetch import Ahead

from .conftest import ROOT

TINY = ROOT / "configs" / "encoder" / "tiny-positional.yaml"


def _threads():
    return [t for t in threading.enumerate() if t.name == "prefetch"]


@pytest.mark.parametrize("depth", [0, 1, 3])
def test_ahead_yields_every_item_in_order(depth):
    feed = Ahead(lambda k: k * k, range(50), depth)
    assert list(feed) == [(k, k * k) for k in range(50)]
    with pytest.raises(StopIteration):
        next(feed)
    feed.close()
    assert feed.busy_seconds >= 0


def test_a_worker_error_is_raised_by_next_with_its_message():
    def make(k):
        if k == 3:
            raise ValueError("draw 3 went wrong")
        return k
    feed = Ahead(make, range(10), 2)
    assert [next(feed)[1] for _ in range(3)] == [0, 1, 2]
    with pytest.raises(ValueError, match="draw 3 went wrong"):
        next(feed)
    with pytest.raises(ValueError, match="draw 3 went wrong"):
        next(feed)
    feed.close()


def test_close_stops_an_endless_feed_and_the_thread_is_a_daemon():
    import itertools
    feed = Ahead(lambda k: k, itertools.count(), 2)
    assert next(feed) == (0, 0)
    (t,) = _threads()
    assert t.daemon
    feed.close()
    assert not t.is_alive() and not _threads()


def _trainer(tiny, tmp_path, prefetch):
    """A Trainer with its data set up, but no engine: enough for its batch feed."""
    from encoder.config import EncoderConfig
    from encoder.core import prepare
    from encoder.train import Trainer
    from proto import config as C
    cfg = C.load(EncoderConfig, TINY, [f"out={tmp_path}", "mlflow=false",
                                       f"data.prefetch={prefetch}"])
    t = Trainer(cfg, lm=tiny, log=lambda s: None)
    t.setup = prepare(cfg, tiny)
    t.rank, t.world, t.micro, t.accum, t.step = 0, 1, 2, 2, 0
    return t


def _batches(t, steps):
    out = []
    for step in steps:
        t.step = step
        for micro in range(t.accum):
            exs, inputs = t.next_batch(micro)
            out.append(([x.token_ids for x in exs], inputs["ids"].tolist(),
                        inputs["mask"].tolist(), inputs["texts"]))
    return out


def test_the_prefetched_feed_gives_the_plain_streams_batches(tiny, tmp_path):
    """Steps in order, then a jump back (a moved step restarts the feed where it points):
    every batch is the one the split draws for its position, with or without the thread."""
    steps = [0, 1, 2, 3, 4, 5, 2, 3, 9]
    plain = _trainer(tiny, tmp_path / "plain", 0)
    split = plain.setup.split
    want = [[x.token_ids for x in split.micro_batch(s, m, 0, 1, 2, 2)]
            for s in steps for m in range(2)]
    got_plain = _batches(plain, steps)
    ahead = _trainer(tiny, tmp_path / "ahead", 3)
    got_ahead = _batches(ahead, steps)
    ahead.close_feed()
    assert [b[0] for b in got_plain] == want
    assert got_ahead == got_plain
    assert not _threads()


def test_a_draw_that_fails_ahead_fails_the_step_that_needs_it(tiny, tmp_path, monkeypatch):
    t = _trainer(tiny, tmp_path, 2)
    real = t.setup.split.micro_batch

    def failing(step, *a):
        if step == 2:
            raise RuntimeError("stream position 8: 100 draws all equal held-out texts")
        return real(step, *a)
    monkeypatch.setattr(t.setup.split, "micro_batch", failing)
    _batches(t, [0, 1])
    with pytest.raises(RuntimeError, match="100 draws all equal held-out"):
        _batches(t, [2])
    t.close_feed()
    assert not _threads()


def test_the_feed_draws_nothing_past_the_runs_last_step(tiny, tmp_path):
    """A run's feed ends with its last step, so the texts drawn are the texts trained on
    (encoder.seen counts exactly those)."""
    t = _trainer(tiny, tmp_path, 3)
    t.feed_end = 3
    _batches(t, [0, 1, 2])
    t.feed._thread.join(timeout=10)
    assert t.feed.made == 3 * t.accum
    t.close_feed()
