
import dataclasses

import pytest
import torch

from proto.fit import FitRow, Fitter, Recipe, RowAdam, fit_shared_m, get_recipe, start_rows_at

TEXTS = ["hello world", "the cat sat", "a bird", "xyz"]


def rows_for(lm, texts, restarts=1):
    return [FitRow(lm.tokenize(t), t, r) for t in texts for r in range(restarts)]


def test_vectorised_adamw_matches_torch_adamw():
    torch.manual_seed(0)
    rec = Recipe(lr=0.05, beta1=0.9, beta2=0.95, weight_decay=0.1)
    p0 = torch.randn(3, 5)
    tab = RowAdam(5, "cpu", True)
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


def test_shared_m_groups_and_frozen_m(tiny):
    rec = get_recipe("default", lr=0.05, max_steps=60)
    rows = rows_for(tiny, TEXTS)
    res = Fitter(tiny, rec, batch_size=4).fit(rows, m_mode="unit", group_size=2)
    assert torch.equal(res[0].m, res[1].m) and torch.equal(res[2].m, res[3].m)
    assert not torch.equal(res[0].m, res[2].m)
    m, warm = fit_shared_m(tiny, [r.token_ids for r in rows], rec, steps=30)
    assert all(torch.equal(r.m, m) for r in warm)
    res2 = Fitter(tiny, rec).fit(rows, m_mode="frozen", m=m)
    assert all(torch.equal(r.m, m) for r in res2)


def test_shared_e_groups(tiny):
    rec = get_recipe("default", lr=0.05, max_steps=10)
    res = Fitter(tiny, rec, batch_size=4).fit(rows_for(tiny, TEXTS), e_mode="unit",
                                              m_mode="row", group_size=2)
    assert torch.equal(res[0].e, res[1].e) and not torch.equal(res[0].m, res[1].m)


def test_nan_rows_are_reported_not_fatal(tiny):
    rec = get_recipe("default", max_steps=5)
    bad_m = torch.full((tiny.d_model,), float("nan"))
    res = Fitter(tiny, rec).fit(rows_for(tiny, TEXTS[:2]), m_mode="frozen", m=bad_m)
    assert [r.status for r in res] == ["nan", "nan"]
    assert not any(r.solved for r in res)


def test_bad_inputs(tiny):
    f = Fitter(tiny, get_recipe("default"))
    with pytest.raises(ValueError, match="empty"):
        f.fit([FitRow([], "x")])
    with pytest.raises(ValueError, match="context"):
        f.fit([FitRow([5] * 600, "x")])
    with pytest.raises(ValueError, match="unknown recipe"):
        get_recipe("fastest")
    with pytest.raises(ValueError, match="lr"):
        get_recipe("default", lr=-1.0)


def test_paper_recipe_is_the_papers():
    p = get_recipe("paper")
    assert (p.lr, p.beta1, p.beta2, p.weight_decay, p.init_std, p.max_steps, p.prefix,
            p.arrangement) == (1e-2, 0.9, 0.9, 1e-2, 1.0, 5000, "", "e_m")


def test_cosine_schedule_has_its_own_horizon():
    from proto.fit import lr_factor
    r = Recipe(schedule="cosine", schedule_steps=100, max_steps=2000)
    f = lr_factor(r, torch.tensor([0.0, 50.0, 100.0, 1500.0]))
    assert torch.allclose(f, torch.tensor([1.0, 0.55, 0.1, 0.1]), atol=1e-6)
    assert torch.equal(lr_factor(Recipe(), torch.tensor([7.0])), torch.tensor([1.0]))


def test_tokens_init_starts_e_at_the_texts_mean_embedding(tiny):
    """e_init='tokens': the starting e leans towards the text's own mean input embedding,
    keeps the noise's scale, and restarts still start apart."""
    rec = get_recipe("default", e_init="tokens", lr=1e-9, max_steps=1)  # ~ the initial vectors
    text = "the cat sat on the mat"
    res = Fitter(tiny, rec).fit(rows_for(tiny, [text], restarts=2))
    plain = Fitter(tiny, get_recipe("default", e_init="normal", lr=1e-9, max_steps=1)).fit(
        rows_for(tiny, [text]))
    mean = tiny.embed(torch.tensor(tiny.tokenize(text))).float().mean(0)
    cos = torch.nn.functional.cosine_similarity
    assert cos(res[0].e, mean, dim=0) > 0.5 > abs(float(cos(plain[0].e, mean, dim=0)))
    assert not torch.allclose(res[0].e, res[1].e)
    with pytest.raises(ValueError, match="e_init"):
        get_recipe("default", e_init="zeros")


def test_row_center_shifts_each_rows_start_by_its_own_delta(tiny):
    """Fitter.row_center (a text-dependent start): each row starts at its usual init plus the
    delta the hook returns for it; rows it returns nothing for start as before."""
    rec = get_recipe("default", lr=1e-9, max_steps=1)  # the returned vectors ~ the initial ones
    rows = rows_for(tiny, ["the cat sat", "a bird"])
    plain = Fitter(tiny, rec).fit(rows)
    fitter = Fitter(tiny, rec)
    shift = torch.arange(tiny.d_model, dtype=torch.float32)
    fitter.row_center = lambda row: {"e": shift} if row.key == "the cat sat" else {}
    moved = fitter.fit(rows)
    assert torch.allclose(moved[0].e - plain[0].e, shift, atol=1e-4)
    assert torch.allclose(moved[0].m, plain[0].m, atol=1e-6)
    assert torch.allclose(moved[1].e, plain[1].e, atol=1e-6)


def test_stalled_rows_restart_from_a_fresh_init_and_count_all_steps(tiny):
    texts = ["the cat sat on the mat", "birds of a feather"]
    rec = get_recipe("default", lr=1e-4, max_steps=10)          # too slow to solve anything
    plain = Fitter(tiny, rec).fit(rows_for(tiny, texts))
    again = Fitter(tiny, dataclasses.replace(rec, restart_after=4)).fit(rows_for(tiny, texts))
    assert [r.attempts for r in plain] == [1, 1]
    assert [r.attempts for r in again] == [3, 3]                 # restarts after steps 4 and 8
    assert [r.steps for r in again] == [10, 10]                   # the cap counts every attempt
    assert not torch.allclose(plain[0].e, again[0].e, atol=1e-2)  # e left its first init
    # a frozen m stays the given one; restarts re-draw only e
    m = torch.randn(tiny.d_model)
    fr = Fitter(tiny, dataclasses.replace(rec, restart_after=4)).fit(
        rows_for(tiny, texts), m_mode="frozen", m=m)
    assert all(torch.equal(r.m, m) for r in fr) and [r.attempts for r in fr] == [3, 3]
    # no restart when the cap is reached: the result is what the last attempt reached
    end = Fitter(tiny, dataclasses.replace(rec, restart_after=10)).fit(rows_for(tiny, texts))
    assert [r.attempts for r in end] == [1, 1]
    assert all(torch.equal(a.e, b.e) and a.accuracy == b.accuracy for a, b in zip(end, plain))
    end = Fitter(tiny, dataclasses.replace(rec, restart_after=5)).fit(rows_for(tiny, texts))
    assert [r.attempts for r in end] == [2, 2] and [r.steps for r in end] == [10, 10]
    with pytest.raises(ValueError, match="restart_after"):
        get_recipe("default", restart_after=-1)


def test_trace_records_accuracy_after_k_steps(tiny):
    """Fitter.fit(trace=...) gives the refinement curve of each row: K = 0 is the start, and
    a row that solves early counts as solved at every later K."""
    from proto.fit import FitRow, Fitter, get_recipe
    rows = [FitRow(tiny.tokenize(t), t, 0) for t in ("hello there", "abc", "one two")]
    fitter = Fitter(tiny, get_recipe("default_v1", max_steps=40), batch_size=4)
    res = fitter.fit(rows, trace=(0, 1, 5, 40))
    plain = Fitter(tiny, get_recipe("default_v1", max_steps=40), batch_size=4).fit(rows)
    for r, p in zip(res, plain):
        assert set(r.trace) == {0, 1, 5, 40}
        assert r.accuracy == p.accuracy and r.steps == p.steps   # tracing changes nothing
        if r.solved:
            assert all(v == 1.0 for k, v in r.trace.items() if k >= r.steps)
        else:
            assert r.trace[40] == r.accuracy
    assert any(r.trace[0] < r.trace[40] for r in res)


def _frozen_m_solutions(tiny, texts):
    base = get_recipe("default", lr=0.05, max_steps=400)
    m, res = fit_shared_m(tiny, [tiny.tokenize(t) for t in texts], base, steps=400)
    assert all(r.solved for r in res)
    return m, base, {t: r.e for t, r in zip(texts, res)}


def test_first_attempt_starts_at_the_given_e_with_its_own_recipe(tiny):
    """start_rows_at: a row's first attempt starts at the provider's e (no noise to speak of)
    and runs the given recipe: from a solution it stops at once, where it started."""
    texts = ["a bird", "xyz"]
    m, base, sol = _frozen_m_solutions(tiny, texts)
    f = Fitter(tiny, base)
    start_rows_at(f, lambda row: sol[row.key])
    res = f.fit(rows_for(tiny, texts), m_mode="frozen", m=m)
    assert [r.solved for r in res] == [True, True]
    assert [r.steps for r in res] == [0, 0]          # solved where it started
    assert all(torch.allclose(r.e, sol[r.key], atol=1e-4) for r in res)


def test_an_unsolved_first_attempt_falls_back_to_the_recipe(tiny):
    """A first attempt that cannot move (lr 1e-9) never solves on its own; after its
    restart_after steps the row starts again where the fitter's recipe starts (its e_center
    here, e0 in the corpus) with that recipe and solves, and its tail restarts do too."""
    texts = ["a bird", "xyz"]
    m, base, _ = _frozen_m_solutions(tiny, texts)
    frozen = get_recipe("refine", lr=1e-9, restart_after=0)
    far = lambda row: torch.full((tiny.d_model,), 3.0)
    kw = {"m_mode": "frozen", "m": m}
    zero = torch.zeros(tiny.d_model)

    stuck = Fitter(tiny, dataclasses.replace(base, max_steps=30), e_center=zero)
    start_rows_at(stuck, far, frozen)
    assert not any(r.solved for r in stuck.fit(rows_for(tiny, texts), **kw))

    back = Fitter(tiny, base, e_center=zero)
    start_rows_at(back, far, dataclasses.replace(frozen, restart_after=5))
    res = back.fit(rows_for(tiny, texts), **kw)
    assert [r.solved for r in res] == [True, True]
    assert all(r.attempts >= 2 and r.steps > 5 for r in res)

    tail = Fitter(tiny, base, e_center=zero, tail_restarts=3, tail_after=0)
    start_rows_at(tail, far, frozen)
    assert all(r.solved for r in tail.fit(rows_for(tiny, texts), **kw))
