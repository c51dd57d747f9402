
import dataclasses

import pytest
import torch

from proto.fit import FitRow, Fitter, Recipe, _Table, fit_shared_m, get_recipe

TEXTS = ["hello world", "the cat sat", "a bird", "xyz"]


def rows_for(lm, texts, restarts=1):
    return [FitRow(lm.tokenize(t), t, r) for t in texts for r in range(restarts)]


def test_vectorised_adamw_matches_torch_adamw():
    torch.manual_seed(0)
    rec = Recipe(lr=0.05, beta1=0.9, beta2=0.95, weight_decay=0.1)
    p0 = torch.randn(3, 5)
    tab = _Table(5, "cpu", True)
    tab.add(p0.clone())
    ref = p0.clone().requires_grad_(True)
    opt = torch.optim.AdamW([ref], lr=0.05, betas=(0.9, 0.95), weight_decay=0.1, eps=1e-8)
    for _ in range(7):
        g = torch.randn(3, 5)
        tab.step(g, rec)
        ref.grad = g.clone()
        opt.step()
    assert torch.allclose(tab.p, ref.detach(), atol=1e-6)


def test_tiny_model_solves_short_texts(tiny):
    res = Fitter(tiny, get_recipe("default", lr=0.05, max_steps=400)).fit(rows_for(tiny, TEXTS))
    assert [r.solved for r in res] == [True] * len(TEXTS)
    assert all(r.accuracy == 1.0 and r.c_tokens == r.n_tokens for r in res)
    assert all(0 < r.steps < 400 for r in res if r.n_tokens > 3)


def test_batched_fit_equals_independent_fits(tiny):
    """Rows are independent: a batch of rows ends where each row alone ends."""
    rec = get_recipe("default", lr=0.05, max_steps=12)   # too few steps to solve: all run 12
    rows = rows_for(tiny, ["hello world", "the cat sat on", "birds of a feather"], restarts=2)
    together = Fitter(tiny, rec, batch_size=8, seed=3).fit(rows)
    for i, row in enumerate(rows):
        alone = Fitter(tiny, rec, batch_size=1, seed=3).fit([row])[0]
        assert together[i].steps == alone.steps == 12
        assert torch.allclose(together[i].e, alone.e, atol=1e-4)
        assert torch.allclose(together[i].m, alone.m, atol=1e-4)


def test_same_seed_same_result_other_seed_differs(tiny):
    rec = get_recipe("default", lr=0.05, max_steps=5)
    a = Fitter(tiny, rec, seed=1).fit(rows_for(tiny, TEXTS[:2]))
    b = Fitter(tiny, rec, seed=1).fit(rows_for(tiny, TEXTS[:2]))
    c = Fitter(tiny, rec, seed=2).fit(rows_for(tiny, TEXTS[:2]))
    assert all(torch.equal(x.e, y.e) for x, y in zip(a, b))
    assert not torch.allclose(a[0].e, c[0].e)


def test_early_stop_and_refill_keep_the_batch_full(tiny):
    rec = get_recipe("default", lr=0.05, max_steps=400)
    texts = ["ab", "hello world", "abc", "the cat sat", "xy", "a bird"]
    seen = []
    res = Fitter(tiny, rec, batch_size=2).fit(rows_for(tiny, texts), progress=seen.append)
    assert all(r.solved for r in res)
    assert max(s["active"] for s in seen) == 2
    # refill: while rows are still waiting, a finished row's slot is taken at once
    for s in seen:
        if s["done"] + s["active"] < len(texts):
            assert s["active"] == 2
    # continuous batching: far fewer forward passes than the sum of per-row steps
    assert len(seen) < sum(r.steps + 1 for r in res)
    # each row stops on its own: short texts finish in fewer steps than the batch ran
    assert min(r.steps for r in res) < len(seen)


def test_race_keeps_first_solved_restart(tiny):
    rec = get_recipe("default", lr=0.05, max_steps=400)
    res = Fitter(tiny, rec, batch_size=8).fit(rows_for(tiny, ["hello world"], restarts=3),
                                              race=True)
    assert sum(r.solved for r in res) >= 1
    assert all(r.status in ("ok", "dropped") for r in res)
    solved_steps = min(r.steps for r in res if r.solved)
    assert all(r.steps <= solved_steps for r in res if r.status == "dropped")


def test_tail_restarts_fill_idle_rows_and_report_each_texts_best_row(tiny):
    """Two texts in a batch of 6 with 2 tail restarts each: all six rows run from step 1, and
    each text reports the most accurate of its three rows, which equal the same three restarts
    fitted as explicit rows (rows are independent)."""
    rec = get_recipe("default", lr=0.05, max_steps=3)     # too few steps: every row caps
    texts = ["the cat sat on", "birds of a feather"]
    seen = []
    tail = Fitter(tiny, rec, batch_size=6, seed=5, tail_restarts=2, tail_after=0).fit(
        rows_for(tiny, texts), progress=seen.append)
    assert [r.index for r in tail] == [0, 1] and seen[0]["active"] == 6
    explicit = Fitter(tiny, rec, batch_size=6, seed=5).fit(
        [FitRow(tiny.tokenize(t), t, r) for t in texts for r in (0, 1000, 2000)])
    for i, r in enumerate(tail):
        mine = explicit[3 * i: 3 * i + 3]
        assert r.accuracy == max(x.accuracy for x in mine)
        assert r.restart in (0, 1000, 2000) and r.status == "max_steps"


def test_tail_restarts_first_solved_row_wins_and_ends_its_siblings(tiny):
    rec = get_recipe("default", lr=0.05, max_steps=400)
    texts = ["hello world", "xyz"]
    seen = []
    res = Fitter(tiny, rec, batch_size=3, tail_restarts=3, tail_after=0).fit(
        rows_for(tiny, texts), progress=seen.append)
    assert [r.index for r in res] == [0, 1] and all(r.solved for r in res)
    for r, t in zip(res, texts):
        assert r.key == t and r.accuracy == 1.0
    # while a text is unsolved the batch stays full (no row waits, so tail rows fill it)
    assert all(s["active"] == 3 for s in seen if s["done"] == 0)
    with pytest.raises(ValueError, match="tail_restarts"):
        Fitter(tiny, rec, tail_restarts=-1)


def test_tail_restarts_back_up_only_stragglers(tiny):
    """With the straggler rule no tail row runs before a text has solved, and a tail row
    starts only once some row has run tail_after x the median solved steps."""
    rec = get_recipe("default", lr=0.05, max_steps=60)
    texts = ["ab", "xy", "the cat sat on the mat today", "birds of a feather flock together"]
    seen = []
    res = Fitter(tiny, rec, batch_size=8, tail_restarts=2, tail_after=1.5).fit(
        rows_for(tiny, texts), progress=seen.append)
    assert res[0].solved and res[1].solved
    for s in seen:
        if s["solved"] == 0:
            assert s["active"] == len(texts)
    extra = [s for s in seen if s["active"] > len(texts) - s["done"]]
    assert extra, "the long texts never got a backup row"
    assert extra[0]["step"] >= 1.5 * min(res[0].steps, res[1].steps)
