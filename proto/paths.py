"""Paths between two solutions of one text: linear and quadratic Bezier (paper Sec. 3, Fig. 6).

A solution is a point p = (e, m) ([2, d]; m may be shared and then equal at both ends).
  linear:  phi(t) = (1-t) p1 + t p2
  Bezier:  phi(t) = (1-t)^2 p1 + 2t(1-t) pi + t^2 p2
The control point pi starts at the midpoint and is trained on a batch of t's per step
(stratified over [0, 1], rows of one forward pass), minimising the CE of the text at phi(t),
until the path is solved on the grid or the expected loss along it stops falling. Components
equal at both ends (a shared m) stay fixed so the curve stays in that m.
Reported: accuracy at a fixed t grid (min, mean), curve length / |p2 - p1|, the control
point's loss curve and why its training stopped.
"""
from __future__ import annotations

import dataclasses

import torch

from .arrangement import Arrangement
from .models import LoadedModel
from .onepass import OnePass


@dataclasses.dataclass
class PathReport:
    kind: str                  # linear | bezier
    t: list[float]
    accuracy: list[float]
    min_accuracy: float
    mean_accuracy: float
    length_ratio: float        # curve length / straight distance (1.0 for linear)
    control: torch.Tensor | None = None  # [2, d] for Bezier
    history: list[dict] | None = None    # Bezier: expected loss and min accuracy per check
    steps: int = 0                       # Bezier: control-point steps taken
    stop: str = ""                       # Bezier: solved | converged | cap


def linear_points(p1: torch.Tensor, p2: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    t = t.reshape(-1, *([1] * p1.dim()))
    return (1 - t) * p1 + t * p2


def bezier_points(p1: torch.Tensor, pi: torch.Tensor, p2: torch.Tensor, t: torch.Tensor
                  ) -> torch.Tensor:
    t = t.reshape(-1, *([1] * p1.dim()))
    return (1 - t) ** 2 * p1 + 2 * t * (1 - t) * pi + t ** 2 * p2


def bezier_length(p1, pi, p2, n: int = 512) -> float:
    """Arc length by the trapezoid rule on |phi'(t)| = |2(1-t)(pi-p1) + 2t(p2-pi)|."""
    t = torch.linspace(0, 1, n + 1).reshape(-1, *([1] * p1.dim()))
    speed = (2 * (1 - t) * (pi - p1) + 2 * t * (p2 - pi)).flatten(1).norm(dim=1)
    return float(torch.trapezoid(speed, dx=1.0 / n))


def _scores(op: OnePass, pts: torch.Tensor, targets: torch.Tensor):
    """(per-point loss [K], hits [K, N]) for points pts [K, 2, d]."""
    return op.scores(pts[:, 0], pts[:, 1], targets)


def evaluate(lm: LoadedModel, arr: Arrangement, token_ids: list[int], pts: torch.Tensor,
             chunk: int = 32) -> list[float]:
    """Accuracy of the text at each point pts [K, 2, d] (one pass per chunk of points)."""
    op = OnePass(lm, arr)
    tgt = torch.tensor([token_ids], device=lm.device)
    out = []
    with torch.no_grad():
        for s in range(0, pts.shape[0], chunk):
            p = pts[s: s + chunk].to(lm.device, torch.float32)
            _, hits = _scores(op, p, tgt.expand(p.shape[0], -1))
            out += (hits.float().mean(1)).tolist()
    return out


def as_point(e: torch.Tensor, m: torch.Tensor | None) -> torch.Tensor:
    return torch.stack([e.float(), (m if m is not None else torch.zeros_like(e)).float()])


def linear(lm, arr, token_ids, p1, p2, grid: int = 21) -> PathReport:
    t = torch.linspace(0, 1, grid)
    acc = evaluate(lm, arr, token_ids, linear_points(p1, p2, t))
    return PathReport("linear", t.tolist(), acc, min(acc), sum(acc) / len(acc), 1.0)


def _grid_check(op: OnePass, tgt, p1, pi, p2, t) -> tuple[float, list[float]]:
    """(expected loss along the curve, accuracy at each t) in one no-grad pass."""
    with torch.no_grad():
        loss, hits = _scores(op, bezier_points(p1, pi, p2, t), tgt.expand(len(t), -1))
    return float(loss.mean()), hits.float().mean(1).tolist()


def bezier(lm, arr, token_ids, p1, p2, *, steps: int = 300, samples: int = 8, lr: float = 0.02,
           grid: int = 21, seed: int = 0, check_every: int = 10, patience: int = 3,
           tol: float = 0.01) -> PathReport:
    """Train the control point to convergence, then report accuracy on the t grid and the length.

    `lr` is relative: Adam moves each coordinate by about lr x the RMS coordinate distance of
    the two solutions, so one setting serves pairs 0.5 or 50 apart (a fixed step that suits
    one leaves the control point of the other where it started). Each step draws one t per
    1/samples strip of [0, 1], so every step sees the whole curve. Every `check_every` steps
    the expected loss along the curve (mean CE on the grid) is measured; training stops when
    every grid point decodes the text (the path is solved: the check's answer is settled) or
    when that loss has not fallen by a fraction `tol` over `patience` checks (converged), else
    at `steps`. The report keeps that loss curve (`history`) and why it stopped.
    """
    dev = lm.device
    p1, p2 = p1.to(dev, torch.float32), p2.to(dev, torch.float32)
    free = (p1 != p2).any(dim=1, keepdim=True).float()  # rows equal at both ends stay put
    scale = float(((p2 - p1) * free).pow(2).sum() / (free.sum() * p1.shape[1]).clamp(min=1)
                  ) ** 0.5
    pi = ((p1 + p2) / 2).clone().requires_grad_(True)
    opt = torch.optim.Adam([pi], lr=lr * scale if scale > 0 else lr)
    g = torch.Generator().manual_seed(seed)
    tgt = torch.tensor([token_ids], device=dev)
    op = OnePass(lm, arr)
    t_grid = torch.linspace(0, 1, grid, device=dev)
    history, stop, step = [], "cap", 0
    while True:
        loss_g, acc = _grid_check(op, tgt, p1, pi.detach(), p2, t_grid)
        history.append({"step": step, "loss": loss_g, "min_acc": min(acc)})
        if min(acc) >= 1.0 or scale == 0:
            stop = "solved" if min(acc) >= 1.0 else "cap"
            break
        if (len(history) > patience
                and history[-1 - patience]["loss"] - loss_g < tol * history[-1 - patience]["loss"]):
            stop = "converged"
            break
        if step >= steps:
            break
        for _ in range(min(check_every, steps - step)):
            t = ((torch.arange(samples) + torch.rand(samples, generator=g)) / samples).to(dev)
            loss, _ = _scores(op, bezier_points(p1, pi, p2, t), tgt.expand(samples, -1))
            opt.zero_grad()
            loss.mean().backward()
            pi.grad.mul_(free)
            opt.step()
            step += 1
    pi = pi.detach().cpu()
    straight = float((p2 - p1).norm())
    ratio = bezier_length(p1.cpu(), pi, p2.cpu()) / straight if straight > 0 else 1.0
    return PathReport("bezier", t_grid.tolist(), acc, min(acc), sum(acc) / len(acc), ratio,
                      control=pi, history=history, steps=step, stop=stop)
