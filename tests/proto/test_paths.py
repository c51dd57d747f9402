import torch

from proto.fit import FitRow, Fitter, get_recipe
from proto.paths import as_point, bezier, bezier_length, bezier_points, linear, linear_points


def test_curves_hit_both_solutions_at_the_ends():
    p1, p2, pi = torch.randn(2, 5), torch.randn(2, 5), torch.randn(2, 5)
    t = torch.tensor([0.0, 1.0])
    for pts in (linear_points(p1, p2, t), bezier_points(p1, pi, p2, t)):
        assert torch.allclose(pts[0], p1) and torch.allclose(pts[1], p2)


def test_bezier_length_ratio():
    p1, p2 = torch.zeros(1, 4), torch.ones(1, 4)
    assert abs(bezier_length(p1, (p1 + p2) / 2, p2) / float((p2 - p1).norm()) - 1) < 1e-4
    bent = (p1 + p2) / 2 + torch.tensor([[1.0, -1.0, 0.0, 0.0]])
    assert bezier_length(p1, bent, p2) / float((p2 - p1).norm()) > 1.05


def test_paths_between_two_restarts(tiny):
    ids = tiny.tokenize("hello world")
    res = Fitter(tiny, get_recipe("default", lr=0.05, max_steps=400)).fit(
        [FitRow(ids, "t", 0), FitRow(ids, "t", 1)])
    assert all(r.solved for r in res)
    p1, p2 = as_point(res[0].e, res[0].m), as_point(res[1].e, res[1].m)
    arr = Fitter(tiny, get_recipe("default")).arr
    lin = linear(tiny, arr, ids, p1, p2, grid=11)
    bz = bezier(tiny, arr, ids, p1, p2, steps=60, samples=4, lr=0.05, grid=11)
    for rep in (lin, bz):
        assert rep.accuracy[0] == 1.0 and rep.accuracy[-1] == 1.0
        assert rep.min_accuracy <= rep.mean_accuracy <= 1.0
    assert bz.length_ratio >= 1.0
    # training the control point does not make the curve worse than the straight line
    assert bz.mean_accuracy >= lin.mean_accuracy - 0.05


def test_bezier_training_stops_by_its_rule_and_keeps_its_loss_curve(tiny):
    ids = tiny.tokenize("hello world")
    res = Fitter(tiny, get_recipe("default", lr=0.05, max_steps=400)).fit(
        [FitRow(ids, "t", 0), FitRow(ids, "t", 1)])
    p1, p2 = as_point(res[0].e, res[0].m), as_point(res[1].e, res[1].m)
    arr = Fitter(tiny, get_recipe("default")).arr
    # a step too small to move the control point: the expected loss is flat -> converged
    flat = bezier(tiny, arr, ids, p1, p2, steps=500, lr=1e-9, check_every=5, patience=2)
    lin = linear(tiny, arr, ids, p1, p2, grid=21)
    if lin.min_accuracy < 1.0:  # a straight path that is solved has nothing to train
        assert flat.stop == "converged" and flat.steps == 10
        assert [h["step"] for h in flat.history] == [0, 5, 10]
    trained = bezier(tiny, arr, ids, p1, p2, steps=200, lr=0.05, check_every=10)
    assert trained.stop in ("solved", "converged", "cap") and trained.steps <= 200
    assert trained.history[-1]["loss"] <= trained.history[0]["loss"]
    assert (trained.stop == "solved") == (trained.min_accuracy == 1.0)
