"""One-pass decoding of proto-token solutions, metrics, and the autoregressive baseline.

  python -m proto.decode sol.safetensors        # prints each fitted text, then a JSON summary
  (options: python -m proto.decode --help; the command lives in proto/decode/__main__.py)

Metrics (paper Sec. 3): accuracy = fraction of argmax hits over the N target tokens,
C_tokens = number of hits, H_LM = sum_i -log p_LM(t_i | t_<i), the LLM's own autoregressive
cross-entropy of the text in nats. When the tokenizer puts a BOS token before text, the first
token is scored from it; otherwise t_1 has no context and is left out (h_lm says which).
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from ..arrangement import Arrangement
from ..models import LoadedModel
from ..onepass import OnePass


@dataclasses.dataclass
class Decoded:
    token_ids: list[int]
    text: str
    accuracy: float | None = None
    c_tokens: int | None = None


@torch.no_grad()
def one_pass(lm: LoadedModel, arr: Arrangement, e: torch.Tensor, m: torch.Tensor | None,
             n: int, targets: torch.Tensor | None = None) -> torch.Tensor:
    """Argmax tokens [B, n] from ONE forward pass of [prefix, e, m, ...] (rows of e, m: [B, d]).

    For mem_ar this is the teacher-forced pass (needs targets); use `autoregressive` to decode.
    """
    return OnePass(lm, arr).logits(e, m, n, targets).argmax(-1)


def hits(pred: torch.Tensor, targets: torch.Tensor) -> tuple[list[float], list[int]]:
    """Per-row accuracy and C_tokens; targets padded with -100 are ignored."""
    mask = targets >= 0
    h = ((pred == targets) & mask).sum(1)
    n = mask.sum(1).clamp(min=1)
    return (h.float() / n).tolist(), h.tolist()


@torch.no_grad()
def h_lm(lm: LoadedModel, token_lists: list[list[int]]) -> tuple[list[float], str]:
    """H_LM in nats for each text; second value says how the first token was scored."""
    bos = lm.tokenizer.bos_token_id
    # Only a BOS the tokenizer really puts in front of text counts: SmolLM2 declares
    # <|im_start|> as bos_token (a chat marker) but never adds it.
    if bos is not None:
        probe = lm.tokenizer("a", add_special_tokens=True)["input_ids"]
        bos = bos if probe and probe[0] == bos else None
    how = f"first token scored from BOS id {bos}" if bos is not None else \
        "no BOS token: first token unscored"
    out = []
    for ids in token_lists:
        seq = ([bos] if bos is not None else []) + list(ids)
        x = torch.tensor([seq], device=lm.device)
        logits = lm.model(input_ids=x, use_cache=False).logits.float()[0, :-1]
        tgt = x[0, 1:]
        out.append(float(F.cross_entropy(logits, tgt, reduction="sum")) if len(tgt) else 0.0)
    return out, how


@torch.no_grad()
def autoregressive(lm: LoadedModel, arr: Arrangement, mem: torch.Tensor, n: int) -> torch.Tensor:
    """Greedy decoding of n tokens from [prefix, mem] with HF generate and its KV cache."""
    mem = mem.to(lm.device, torch.float32)
    if mem.dim() == 1:
        mem = mem.unsqueeze(0)
    parts = []
    pe = OnePass(lm, arr).prefix_emb
    if pe is not None:
        parts.append(pe.unsqueeze(0).expand(mem.shape[0], -1, -1))
    parts.append(mem.unsqueeze(1))
    x = torch.cat(parts, 1).to(lm.dtype)
    attn = torch.ones(x.shape[:2], dtype=torch.long, device=lm.device)
    out = lm.model.generate(inputs_embeds=x, attention_mask=attn, max_new_tokens=n,
                            min_new_tokens=n, do_sample=False, use_cache=True,
                            pad_token_id=lm.tokenizer.eos_token_id)
    return out[:, -n:]


@torch.no_grad()
def sample_continuations(lm: LoadedModel, contexts: list[list[int]], k: int, n: int,
                         seed: int = 0, batch_size: int = 64) -> list[list[list[int]]]:
    """k continuations of n tokens for each context, sampled from the LM's full distribution
    (multinomial, temperature 1, no top-k/top-p, end-of-text tokens allowed as ordinary tokens).

    A plain KV-cache loop with its own torch.Generator rather than HF generate: generate's
    defaults (generation_config top_k/top_p, eos stopping) would change the distribution, and
    a private generator keeps the draw independent of the global RNG state.
    """
    out: list[list[list[int]]] = [[] for _ in contexts]
    gen = torch.Generator(device=lm.device).manual_seed(seed)
    jobs = [(i, ctx) for i, ctx in enumerate(contexts) for _ in range(k)]
    # equal-length contexts batch without padding; group by length to keep that true
    jobs.sort(key=lambda j: len(j[1]))
    for b in range(0, len(jobs), batch_size):
        part = jobs[b:b + batch_size]
        groups: dict[int, list] = {}
        for j in part:
            groups.setdefault(len(j[1]), []).append(j)
        for group in groups.values():
            x = torch.tensor([c for _, c in group], dtype=torch.long, device=lm.device)
            res = lm.model(input_ids=x, use_cache=True)
            cache, toks = res.past_key_values, []
            for step in range(n):
                p = torch.softmax(res.logits[:, -1].float(), -1)
                t = torch.multinomial(p, 1, generator=gen)
                toks.append(t)
                if step + 1 < n:
                    res = lm.model(input_ids=t, past_key_values=cache, use_cache=True)
                    cache = res.past_key_values
            ids = torch.cat(toks, 1).tolist()
            for (i, _), row in zip(group, ids):
                out[i].append(row)
    return out

