"""Losses of the encoder, and one-pass decoding of predicted e's through the frozen LLM.

decode   cross-entropy of one-pass decoding `[prefix, e, m, ..., m]`: the frozen LLM's output
         at each scored position against the text's tokens. Gradients flow through the frozen
         decoder into e and on into the encoder; the decoder gets no weight gradients.
regress  distance of the predicted e to the corpus's fitted e (MSE per coordinate, or cosine
         distance), the minimum over the text's solved restarts.
nearest  distance of the predicted e to where a few refinement steps of the decode loss take
         it (m frozen, the encoder untouched): a target on the way to the solution nearest the
         prediction rather than a fixed corpus e far from it, and one any text has (no corpus).
unrolled the decode loss after K refinement steps from the prediction (semi-amortised): the
         steps are the fitter's own per-row AdamW (proto.fit.RowAdam) at the refinement lr,
         and the gradient reaches the prediction through e_K = e + (the steps' total move),
         taken as a constant (first order, as first-order MAML does): the encoder learns a
         start from which K steps decode the text, not only an answer.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from proto.arrangement import Arrangement
from proto.fit import RowAdam, get_recipe
from proto.onepass import OnePass, padded_targets


class Decoder(OnePass):
    """The frozen LLM as the encoder's decoder: one-pass logits, the decode loss and accuracy
    for token lists (proto.onepass does the arrangement and the scoring)."""

    @classmethod
    def of(cls, lm, arr: Arrangement) -> "Decoder":
        return cls(lm, arr)

    def targets(self, token_lists: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        return padded_targets(token_lists, self.lm.device)

    def loss(self, e: torch.Tensor, m: torch.Tensor | None, token_lists: list[list[int]],
             focal_gamma: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean over rows of each row's mean CE, and per-row accuracy (no grad). focal_gamma > 0
        weights each token's CE by (1 - p(token))^gamma: tokens already decoded count less."""
        tgt, n = self.targets(token_lists)
        ce, hits = self.scores(e, m, tgt, n, focal_gamma=focal_gamma)
        return ce.mean(), (hits.sum(1).float() / n).detach()

    @torch.no_grad()
    def accuracy(self, e: torch.Tensor, m: torch.Tensor | None, token_lists: list[list[int]],
                 batch_size: int = 64) -> torch.Tensor:
        """Per-row one-pass token accuracy of e's [R, d] (hits / N)."""
        out = []
        for s in range(0, len(token_lists), batch_size):
            part = token_lists[s: s + batch_size]
            tgt, n = self.targets(part)
            _, hits = self.scores(e[s: s + batch_size], m, tgt, n)
            out.append((hits.sum(1).float() / n).cpu())
        return torch.cat(out) if out else torch.zeros(0)

    @torch.no_grad()
    def predictions(self, e: torch.Tensor, m: torch.Tensor | None, token_lists: list[list[int]],
                    batch_size: int = 64) -> list[list[int]]:
        """Per row, the one-pass argmax token at each of its scored positions (what e decodes
        to; its hits over the text's tokens are `accuracy`)."""
        out = []
        for s in range(0, len(token_lists), batch_size):
            part = token_lists[s: s + batch_size]
            tgt, _ = self.targets(part)
            ids = self.logits(e[s: s + batch_size], m, tgt.shape[1], tgt).argmax(-1).cpu()
            out += [ids[i, :len(t)].tolist() for i, t in enumerate(part)]
        return out


def regress_loss(e: torch.Tensor, targets: list[torch.Tensor | None], metric: str
                 ) -> torch.Tensor | None:
    """Mean over rows with targets of min over restarts of the distance; None if no row has any."""
    terms = []
    for i, t in enumerate(targets):
        if t is None:
            continue
        t = t.to(e.device)
        if metric == "mse":
            dist = ((e[i: i + 1] - t) ** 2).mean(1)
        else:
            dist = 1 - F.cosine_similarity(e[i: i + 1], t, dim=1)
        terms.append(dist.min())
    return torch.stack(terms).mean() if terms else None


def nearest_targets(decoder: Decoder, e: torch.Tensor, m: torch.Tensor | None,
                    token_lists: list[list[int]], steps: int, lr: float
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(targets, accuracy of e, accuracy of the targets): each row of e after `steps`
    refinement steps of its own decode loss (the `refine` recipe at lr, the fitter's per-row
    AdamW); nothing flows back into e or m."""
    z, start_acc = _refined(decoder, e, m, token_lists, steps, lr)
    z = z.to(e.dtype)
    return z, start_acc, decoder.accuracy(z, m, token_lists).to(e.device)


def _refined(decoder: Decoder, e: torch.Tensor, m: torch.Tensor | None,
             token_lists: list[list[int]], steps: int, lr: float
             ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(e after `steps` refinement steps, detached; accuracy of e, None when steps = 0)."""
    recipe = get_recipe("refine", lr=lr)
    table = RowAdam(e.shape[1], e.device, True)
    table.add(e.detach())
    m_fixed = None if m is None else m.detach()
    start_acc = None
    with torch.enable_grad():
        for _ in range(steps):
            z = table.p.detach().requires_grad_(True)
            loss, acc = decoder.loss(z, m_fixed, token_lists)
            start_acc = acc if start_acc is None else start_acc
            # rows are independent: the sum of row losses gives each row its own gradient
            (g,) = torch.autograd.grad(loss * len(token_lists), [z])
            table.step(torch.nan_to_num(g), recipe)
    return table.p.detach(), start_acc


def unrolled(decoder: Decoder, e: torch.Tensor, m: torch.Tensor | None,
             token_lists: list[list[int]], steps: int, lr: float
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(CE after `steps` refinement steps, with its gradient flowing into e; accuracy of e;
    accuracy after the steps). The steps are encoder.refine's (the `refine` recipe)."""
    z, start_acc = _refined(decoder, e, m, token_lists, steps, lr)
    e_k = e + (z.to(e.dtype) - e.detach())
    loss, acc_k = decoder.loss(e_k, m, token_lists)
    return loss, (acc_k if start_acc is None else start_acc), acc_k
