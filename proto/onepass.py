"""One-pass decoding through a frozen LLM: THE place where an arrangement's input is built
from (e, m) and its scored outputs are read back. Fitting, decoding, paths, the encoder's loss
and its evaluation all go through it.

  op = OnePass(lm, arr)                     # the prefix's embeddings, computed once
  logits = op.logits(e, m, n)               # [B, n, V] at the positions scored against t_1..t_n
  ce, hits = op.scores(e, m, targets)       # per-row CE (mean over its own tokens), hits
  targets, n = padded_targets(token_lists, device)   # -100 pads rows shorter than the longest
  preds = op.decode(e, m, token_lists)      # argmax tokens of every row, batched (the decoding
                                            # configuration: proto.decode and the fitter's check)

Rows shorter than the longest are right-padded with -100 targets: causal attention keeps the
padding from touching earlier positions, and padded positions score nothing.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .arrangement import Arrangement
from .models import LoadedModel


def forward_scores(lm: LoadedModel, arr: Arrangement, x: torch.Tensor, n: int) -> torch.Tensor:
    """Logits [B, n, V] (float32) at the scored positions for input embeddings x [B, L, d]."""
    pos = arr.score_positions(n).to(x.device)
    if x.dtype != lm.dtype:
        x = x.to(lm.dtype)
    out = lm.model(inputs_embeds=x, logits_to_keep=pos, use_cache=False)
    return out.logits.float()


def row_losses(logits: torch.Tensor, targets: torch.Tensor, n: torch.Tensor, loss: str = "ce",
               wrong_weight: float = 1.0, focal_gamma: float = 0.0
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """(per-row mean CE over its own tokens [B], per-token hits [B, n]); padding = -100.

    loss 'ce_wrong' weights still-wrong tokens by 1 + wrong_weight (a fitting recipe's
    shaping); focal_gamma > 0 weights each token's CE by (1 - p(token))^gamma (the encoder's).
    """
    mask = targets >= 0
    ce = F.cross_entropy(logits.transpose(1, 2), targets.clamp(min=0), reduction="none")
    hits = (logits.argmax(-1) == targets) & mask
    if loss == "ce_wrong":
        ce = ce * (1.0 + wrong_weight * (~hits).float())
    if focal_gamma:
        ce = ce * (1 - torch.exp(-ce)).pow(focal_gamma)
    ce = ce * mask
    return ce.sum(1) / n, hits


def token_margins(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """[B, n] how far each target token's logit leads the best other token (negative where
    another token wins; +inf at padding)."""
    idx = targets.clamp(min=0).unsqueeze(-1)
    own = logits.gather(-1, idx).squeeze(-1)
    top2 = logits.topk(2, dim=-1).values
    other = torch.where(top2[..., 0] > own, top2[..., 0], top2[..., 1])
    return torch.where(targets >= 0, own - other, torch.full_like(own, float("inf")))


def padded_targets(token_lists: list[list[int]], device) -> tuple[torch.Tensor, torch.Tensor]:
    """(targets [B, N] right-padded with -100, tokens per row [B]) on `device`."""
    n = max(len(t) for t in token_lists)
    tgt = torch.full((len(token_lists), n), -100, dtype=torch.long)
    for i, t in enumerate(token_lists):
        tgt[i, : len(t)] = torch.tensor(t, dtype=torch.long)
    return tgt.to(device), torch.tensor([len(t) for t in token_lists], device=device)


class OnePass:
    """The frozen LLM read in one pass for one arrangement (its prefix embedded once)."""

    def __init__(self, lm: LoadedModel, arr: Arrangement):
        self.lm, self.arr = lm, arr
        with torch.no_grad():
            self.prefix_emb = (lm.embed(torch.tensor(arr.prefix, dtype=torch.long)).float()
                               if arr.prefix else None)

    def check_length(self, n: int, what: str = "text") -> None:
        """ValueError unless an n-token text fits the decoder's context in this arrangement."""
        if n < 1:
            raise ValueError(f"empty {what}: it has no tokens")
        L = self.arr.input_length(n)
        if L > self.lm.max_positions:
            raise ValueError(f"{what} of {n} tokens needs {L} positions, more than the "
                             f"decoder's context of {self.lm.max_positions}")

    def inputs(self, e: torch.Tensor, m: torch.Tensor | None, n: int,
               targets: torch.Tensor | None = None) -> torch.Tensor:
        """Input embeddings [B, L, d] for rows of e ([B, d] or [d]) and m ([B, d], [d] or
        None); mem_ar reads the targets' embeddings (teacher forcing)."""
        e = e.to(self.lm.device, torch.float32)
        if e.dim() == 1:
            e = e.unsqueeze(0)
        if m is not None:
            m = m.to(self.lm.device, torch.float32)
            m = m.reshape(1, -1).expand(e.shape[0], -1) if m.dim() == 1 or len(m) == 1 else m
        tok = None
        if self.arr.autoregressive:
            if targets is None:
                raise ValueError("mem_ar one-pass scoring needs the targets (teacher forcing)")
            tok = self.lm.embed(targets.to(self.lm.device).clamp(min=0)).float()
        return self.arr.build(e, m, n, self.prefix_emb, tok)

    def logits(self, e: torch.Tensor, m: torch.Tensor | None, n: int,
               targets: torch.Tensor | None = None) -> torch.Tensor:
        return forward_scores(self.lm, self.arr, self.inputs(e, m, n, targets), n)

    DECODE_BATCH = 64

    @torch.no_grad()
    def decode(self, e: torch.Tensor, m: torch.Tensor | None, token_lists: list[list[int]],
               batch_size: int = DECODE_BATCH) -> list[list[int]]:
        """Argmax tokens of each row, rows in input order in batches of `batch_size` (each
        padded to its longest row): how a solution file is decoded, so a fit can check that
        what it calls solved reads back the same way. The tokens only feed mem_ar's teacher
        forcing and the lengths."""
        out: list[list[int]] = []
        for s in range(0, len(token_lists), batch_size):
            part = token_lists[s:s + batch_size]
            tgt, _ = padded_targets(part, self.lm.device)
            # one shared m ([d] or [1, d]) serves every batch; per-row m's are sliced
            mm = m if m is None or m.dim() == 1 or len(m) == 1 else m[s:s + batch_size]
            pred = self.logits(e[s:s + batch_size], mm, tgt.shape[1], tgt).argmax(-1).tolist()
            out += [p[:len(t)] for p, t in zip(pred, part)]
        return out

    def scores(self, e: torch.Tensor, m: torch.Tensor | None, targets: torch.Tensor,
               n_tok: torch.Tensor | None = None, **shaping) -> tuple[torch.Tensor, torch.Tensor]:
        """(per-row CE [B], hits [B, N]) of rows e, m against padded targets [B, N]."""
        n = targets.shape[1]
        if n_tok is None:
            n_tok = (targets >= 0).sum(1)
        return row_losses(self.logits(e, m, n, targets), targets, n_tok, **shaping)
