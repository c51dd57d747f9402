"""Input arrangements of proto-tokens (paper Table 1) and the ONE map from outputs to targets.

An arrangement turns per-row vectors e, m (each [B, d]) and a target length N into an input
sequence of embeddings, and says which output positions are scored against t_1..t_N.
An optional fixed real-token prefix (e.g. `<|endoftext|>` as an attention sink) comes first;
it is part of the arrangement and recorded with every solution.

  name     input (after the prefix)            output scored against t_1..t_N
  e_m      [e, m x (N-1)]   (the paper's main)  outputs of all N proto positions
  e_mN     [e, m x N]                            outputs of the N m's (e's output unscored)
  eN       [e x N]          (one proto-token)    all N
  eN2_mN2  [e x ceil(N/2), m x floor(N/2)]       all N
  em_alt   [e, m, e, m, ...] (length N)          all N
  mem_ar   [mem, t_1 .. t_N] (Kuratov et al.)     mem's output -> t_1, t_i's output -> t_{i+1}
                                                 (teacher-forced; decoded autoregressively)
"""
from __future__ import annotations

import dataclasses

import torch

NAMES = ("e_m", "e_mN", "eN", "eN2_mN2", "em_alt", "mem_ar")
PAPER_LABELS = {
    "e_m": "[e][m]x(N-1)", "e_mN": "[e][m]xN", "eN": "[e]xN",
    "eN2_mN2": "[e]xN/2 [m]xN/2", "em_alt": "[e,m]xN/2", "mem_ar": "[mem] t_1..t_N",
}


@dataclasses.dataclass(frozen=True)
class Arrangement:
    name: str = "e_m"
    prefix: tuple[int, ...] = ()  # fixed real token ids before the proto-tokens (attention sink)

    def __post_init__(self):
        if self.name not in NAMES:
            raise ValueError(f"unknown arrangement {self.name!r}; choose from {list(NAMES)}")

    def to_dict(self) -> dict:
        """How solution files, corpus manifests and encoder files record an arrangement."""
        return {"name": self.name, "prefix": list(self.prefix)}

    @classmethod
    def from_dict(cls, d: dict) -> "Arrangement":
        return cls(d.get("name", "e_m"), tuple(d.get("prefix") or ()))

    @property
    def uses_m(self) -> bool:
        return self.name not in ("eN", "mem_ar")

    @property
    def autoregressive(self) -> bool:
        return self.name == "mem_ar"

    def slots(self, n: int) -> list[str]:
        """Kind of each proto input position: 'e', 'm' or 't' (a target token, mem_ar only)."""
        if n < 1:
            raise ValueError("a text needs at least one token")
        if self.name == "e_m":
            return ["e"] + ["m"] * (n - 1)
        if self.name == "e_mN":
            return ["e"] + ["m"] * n
        if self.name == "eN":
            return ["e"] * n
        if self.name == "eN2_mN2":
            h = (n + 1) // 2
            return ["e"] * h + ["m"] * (n - h)
        if self.name == "em_alt":
            return ["e" if i % 2 == 0 else "m" for i in range(n)]
        # mem_ar: mem, then teacher-forced t_1..t_{N-1} (t_N's output would predict t_{N+1})
        return ["e"] + ["t"] * (n - 1)

    def input_length(self, n: int) -> int:
        return len(self.prefix) + len(self.slots(n))

    def score_positions(self, n: int) -> torch.Tensor:
        """Output positions (in the full input, prefix included) scored against t_1..t_N."""
        p = len(self.prefix)
        first = p + 1 if self.name == "e_mN" else p
        return torch.arange(first, first + n)

    def build(self, e: torch.Tensor, m: torch.Tensor | None, n: int,
              prefix_emb: torch.Tensor | None = None,
              token_emb: torch.Tensor | None = None) -> torch.Tensor:
        """Input embeddings [B, L, d] for rows with vectors e, m ([B, d]).

        prefix_emb: [P, d] embeddings of `prefix`; token_emb: [B, N, d] embeddings of the
        target tokens (mem_ar only). Rows shorter than n are right-padded by the caller's
        choice of n: causal attention keeps padding from touching earlier positions.
        """
        kinds = self.slots(n)
        B, d = e.shape
        parts = []
        if self.prefix:
            if prefix_emb is None:
                raise ValueError("arrangement has a prefix but no prefix embeddings were given")
            parts.append(prefix_emb.to(e.dtype).unsqueeze(0).expand(B, -1, -1))
        if self.name == "mem_ar":
            if token_emb is None:
                raise ValueError("mem_ar needs the target token embeddings")
            parts.append(e.unsqueeze(1))
            parts.append(token_emb[:, : n - 1].to(e.dtype))
            return torch.cat(parts, dim=1)
        if self.uses_m and m is None:
            raise ValueError(f"arrangement {self.name} needs m")
        # Build by index so one gather makes the whole sequence regardless of the pattern.
        stacked = torch.stack([e, m if m is not None else e], dim=1)  # [B, 2, d]
        idx = torch.tensor([0 if k == "e" else 1 for k in kinds], device=e.device)
        parts.append(stacked[:, idx])
        return torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]


def scored(outputs: torch.Tensor, arrangement: Arrangement, n: int) -> torch.Tensor:
    """THE map from model outputs [B, L, ...] to the [B, N, ...] slice aligned with t_1..t_N.

    Fitting and decoding pass the same `score_positions` to the model as `logits_to_keep`, so
    the LM head runs only where targets are scored; this function is that selection for any
    other per-position output (hidden states, tests).
    """
    pos = arrangement.score_positions(n).to(outputs.device)
    return outputs.index_select(1, pos)


def prefix_ids(tokenizer, spec: str) -> tuple[int, ...]:
    """Token ids for a prefix spec.

    '' no prefix; 'sink' = `<|endoftext|>` when it is one token of the vocabulary, else the
    tokenizer's BOS, else its EOS; 'eos' / 'bos' the tokenizer's own; anything else is literal
    text (e.g. '<|endoftext|>').
    """
    if not spec:
        return ()
    if spec == "sink":
        tid = tokenizer.convert_tokens_to_ids("<|endoftext|>")
        if isinstance(tid, int) and tid != tokenizer.unk_token_id and tid is not None:
            return (int(tid),)
        for cand in (tokenizer.bos_token_id, tokenizer.eos_token_id):
            if cand is not None:
                return (int(cand),)
        raise ValueError("prefix 'sink': the tokenizer has no <|endoftext|>, BOS or EOS token")
    if spec in ("eos", "bos"):
        tid = tokenizer.eos_token_id if spec == "eos" else tokenizer.bos_token_id
        if tid is None:
            raise ValueError(f"prefix {spec!r} requested but the tokenizer has no such token")
        return (int(tid),)
    ids = tokenizer(spec, add_special_tokens=False)["input_ids"]
    if not ids:
        raise ValueError(f"prefix {spec!r} tokenizes to nothing")
    return tuple(int(i) for i in ids)
