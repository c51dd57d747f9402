"""Batched fitting of proto-tokens for many texts at once.

  python -m proto.fit --text "The old lighthouse keeper climbed the stairs every evening."
  python -m proto.fit --model tiny-random --text "hello" max_steps=300   # tiny CPU run
  (all options: python -m proto.fit --help; the command lives in proto/fit/__main__.py)

The frozen LLM sees a batch of rows; a row is one (text, restart). Parameters are leaf
tensors held per row or per unit (a unit is a group of rows that share a vector, e.g. m shared
by S_g texts), each with its own AdamW state and step count, so rows are independent: losses are
summed over rows, never averaged across them. A unit stops when all its rows reach the target
accuracy (per-row early stop when units are single rows), and finished units are replaced by
waiting ones right away (continuous batching). Waiting rows are sorted by length so a batch
holds similar lengths; shorter rows are right-padded, which causal attention makes harmless.

Only the active rows go through the model at each step, so finished rows cost nothing.

Tail restarts (`Fitter(tail_restarts=k)`): once no row waits, a batch shrinks to the slowest
texts and most of its rows sit idle. The fitter then fills the free rows with up to k extra
restarts of each straggler (same text, same start, fresh noise); the first of a text's rows to
solve is its result and ends the others. A text whose rows all stop unsolved reports its most
accurate row. A straggler is a text whose row has run `tail_after` times the median steps of
the texts solved so far in this fit (0: every unsolved text, at once): most texts solve on
their first seed, and backing them all up would only make every step of the bulk dearer.
"""
from __future__ import annotations

import dataclasses
import hashlib
import math
import time
from typing import Callable, Literal

import torch
import torch.nn.functional as F

from ..arrangement import Arrangement, prefix_ids
from ..models import LoadedModel
from ..onepass import OnePass, row_losses, token_margins
from ..start import load_start

ShareMode = Literal["row", "unit", "frozen"]


@dataclasses.dataclass
class Recipe:
    """How proto-tokens are initialised and optimised. `paper` is the paper's exact scheme."""
    name: str = "custom"
    arrangement: str = "e_m"
    prefix: str = "sink"         # fixed real-token prefix: '' none, 'sink', 'bos', 'eos', or text
    init_std: float = 0.0        # 0 -> the std of the model's input embeddings
    # e's starting point: 'normal' N(0, init_std) (the paper); 'tokens' adds the mean input
    # embedding of the text's own tokens, rescaled to the noise's expected norm (a data-dependent
    # start; restarts still differ by their noise)
    e_init: Literal["normal", "tokens"] = "normal"
    lr: float = 1e-2
    beta1: float = 0.9
    beta2: float = 0.9
    weight_decay: float = 1e-2
    eps: float = 1e-8
    schedule: Literal["constant", "cosine"] = "constant"
    schedule_steps: int = 0      # cosine horizon (0 = max_steps); lr stays at 0.1x after it
    warmup_steps: int = 0
    max_steps: int = 5000
    target_accuracy: float = 1.0  # early stop when every row of a unit reaches this
    # A token counts toward the target only when its logit leads the runner-up by this much:
    # a row that stops the first step its argmaxes are right sits on the edge, where the
    # rounding of another batch shape or precision flips a token. None = by the decoder's
    # precision (STOP_MARGINS); 0 = plain argmax (the paper's rule).
    stop_margin: float | None = None
    loss: Literal["ce", "ce_wrong"] = "ce"  # ce_wrong: extra weight on still-wrong tokens
    wrong_weight: float = 1.0
    # A row still unsolved after this many steps of its current attempt starts again from a
    # fresh random init (new seed, fresh optimiser state); its step count and the cap count
    # every attempt. 0 = never. Only for rows with their own vectors (no shared 'unit' groups).
    restart_after: int = 0
    # Where e and m start before the init noise: '' the origin (the paper), 'learned' the
    # meta-learned start shipped for the fitted model's weights (proto/starts/, written by
    # `python -m proto.meta`; the origin when none is shipped), or a path to such a file.
    start: str = ""

    def __post_init__(self):
        if self.lr <= 0 or not math.isfinite(self.lr):
            raise ValueError(f"lr must be a positive number, got {self.lr}")
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1):
            raise ValueError("beta1 and beta2 must be in [0, 1)")
        if self.max_steps < 1:
            raise ValueError("max_steps must be >= 1")
        if not 0 < self.target_accuracy <= 1:
            raise ValueError("target_accuracy must be in (0, 1]")
        if self.init_std < 0:
            raise ValueError("init_std must be >= 0 (0 means the embedding std)")
        if self.restart_after < 0:
            raise ValueError("restart_after must be >= 0 (0 = never)")
        if self.stop_margin is not None and not 0 <= self.stop_margin < 100:
            raise ValueError(f"stop_margin must be in [0, 100) or None, got {self.stop_margin}")
        if self.e_init not in ("normal", "tokens"):
            raise ValueError(f"e_init must be 'normal' or 'tokens', got {self.e_init!r}")
        Arrangement(self.arrangement)  # validates the name


RECIPES: dict[str, Recipe] = {
    # Mezentsev & Oseledets: AdamW lr 1e-2, betas (0.9, 0.9), wd 1e-2, N(0, 1), 5000 steps, [e, m...].
    "paper": Recipe(name="paper", prefix="", init_std=1.0),
    # The paper's optimiser with an <|endoftext|> attention sink and embedding-scale init.
    "sink": Recipe(name="sink", prefix="sink", init_std=0.0),
    # The best recipe from the origin without restarts (docs/research/fitting-recipes): with the
    # sink, steps to solve at N=32 fell monotonically from lr 1e-2 to 3e-1 (1.0 was worse), and
    # a cosine decay to 0.1x over 300 steps cut the median again (8 texts: 202/255 -> 160/200
    # steps). The recipe the corpus and paper-table numbers were measured with.
    "default_v1": Recipe(name="default_v1", prefix="sink", init_std=0.0, lr=0.3,
                         schedule="cosine", schedule_steps=300, max_steps=2000),
    # default_v1, plus: a row still unsolved when its cosine cycle ends starts a fresh attempt
    # with a fresh cycle (at N=32, 6+6 texts, cap 600, the 3 texts left at step 300 all solved
    # in their second attempt; docs/research/fitting-recipes). It keeps default_v1's init:
    # e_init='tokens' solved 36 vs 38 texts over four side-by-side runs, 5/8 vs 8/8 in
    # eval.bench_fit.
    "default_v2": Recipe(name="default_v2", prefix="sink", init_std=0.0, lr=0.3,
                         schedule="cosine", schedule_steps=300, max_steps=2000,
                         restart_after=300),
    # default_v2 started at the meta-learned (e0, m0) shipped for the model (proto.meta;
    # docs/research/learned-starts), at lr 0.2 (from a good start a lower lr keeps its structure;
    # starts at another text's solution were best at 0.1-0.2). N=32, 16 + 16 texts, cap 300, from
    # the shipped start (stage 9): 32/32 solved, median 54 / 73.5 (59.5 pooled), 2029 row-steps
    # (stage 4: 57.5 / 75.5, 2200; stage 1: 31/32, 118 / 134, 4040) against default_v2's
    # 26/32, 178 / 216, 6737.
    # On a model with no shipped start it is default_v2 at lr 0.2, with a warning.
    "default": Recipe(name="default", prefix="sink", init_std=0.0, lr=0.2, schedule="cosine",
                      schedule_steps=300, max_steps=2000, restart_after=300, start="learned"),
    # The first attempt from an encoder's e (start_rows_at; FirstAttempt): refinement. Constant
    # Adam with no noise to speak of (init_std 0 would mean the embedding std): a start that
    # is mostly right is spoiled by the fitting recipe's noise and large early steps. From the
    # shipped encoder's e on 64 held-out 8-token texts constant steps needed 1486 row-steps
    # where `default`'s own schedule from the same e needed 2084 and a cosine from 0.3 over 60
    # 1873 (docs/research/encoder-starts); a decay over the K steps of a K-step refinement
    # loses too (0.723 vs 0.873 after 10 steps on 4-token chunks). lr 1.0: on chunks of 6
    # tokens of 32 held-out sentences, after 10 steps lr 0.3 / 0.5 / 0.7 / 1.0 decode 0.782 /
    # 0.905 / 0.958 / 0.994 (0 / 12 / 44 / 91 % of the sentences exact; docs/research/
    # chunking), and eval.bench_corpus's 64 texts build in 1825 / 959 / 752 fitting steps at
    # 0.3 / 0.7 / 1.0 (from e0: 2026). A row still unsolved after
    # restart_after = 60 steps starts again from e0 with the fitter's recipe: it bounds what
    # a poor start can waste.
    "refine": Recipe(name="refine", prefix="sink", init_std=1e-6, lr=1.0, schedule="constant",
                     max_steps=2000, restart_after=60, start="learned"),
}


# Recipe.stop_margin=None: the logit lead every target token needs before a row stops, by the
# decoder's precision (docs/research/solved-means-decodes: how far logits move between batch
# shapes and precisions, and what each margin costs in steps).
STOP_MARGINS = {torch.float32: 0.1, torch.bfloat16: 1.0, torch.float16: 0.5}


def stop_margin(recipe: Recipe, dtype: torch.dtype) -> float:
    return recipe.stop_margin if recipe.stop_margin is not None else STOP_MARGINS[dtype]


def get_recipe(name: str, **overrides) -> Recipe:
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; choose from {sorted(RECIPES)}")
    return dataclasses.replace(RECIPES[name], **overrides)


@dataclasses.dataclass
class FitRow:
    token_ids: list[int]
    key: str            # stable identity of the text (seeds the init together with restart)
    restart: int = 0


@dataclasses.dataclass
class FitResult:
    index: int          # position of the row in the input list
    key: str
    restart: int
    e: torch.Tensor     # [d] float32, cpu
    m: torch.Tensor | None
    accuracy: float
    c_tokens: int
    n_tokens: int
    loss: float
    steps: int
    seconds: float
    solved: bool
    status: str = "ok"  # ok | max_steps | nan | dropped (a sibling restart solved first)
    #                     | unverified (held the target in the batch, decoded wrong alone)
    margin: float = float("nan")  # the smallest lead of a target token's logit at its stop
    attempts: int = 1   # inits tried (Recipe.restart_after); steps counts all of them
    # Fitter.fit(trace=...): accuracy after K steps for each traced K the row reached (a row
    # that solved before K counts as solved at K, since the fitter stops it there)
    trace: dict[int, float] = dataclasses.field(default_factory=dict)


def row_seed(seed: int, key: str, restart: int, what: str) -> int:
    h = hashlib.sha256(f"{seed}|{key}|{restart}|{what}".encode()).digest()
    return int.from_bytes(h[:8], "little") & ((1 << 63) - 1)


def embedding_std(lm: LoadedModel) -> float:
    w = lm.model.get_input_embeddings().weight
    ids = torch.arange(min(w.shape[0], 8192), device=w.device)
    return float(lm.embed(ids).float().std())


def init_vector(seed: int, d: int, std: float) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(d, generator=g) * std


def lr_factor(recipe: Recipe, step: torch.Tensor) -> torch.Tensor:
    """Per-row learning-rate multiplier at (1-based) step counts `step`."""
    f = torch.ones_like(step, dtype=torch.float32)
    if recipe.warmup_steps > 0:
        f = torch.clamp(step.float() / recipe.warmup_steps, max=1.0)
    if recipe.schedule == "cosine":
        horizon = recipe.schedule_steps or recipe.max_steps
        frac = torch.clamp((step.float() - recipe.warmup_steps)
                           / max(1, horizon - recipe.warmup_steps), 0, 1)
        f = f * (0.1 + 0.9 * 0.5 * (1 + torch.cos(math.pi * frac)))
    return f


class RowAdam:
    """A set of vectors with per-vector AdamW state (elementwise, so vectors stay independent):
    the fitter's optimiser, and a refinement loop's wherever the fitter's steps must be
    replayed outside it (e.g. unrolled refinement in encoder training)."""

    def __init__(self, d: int, device, trainable: bool):
        self.d, self.device, self.trainable = d, device, trainable
        z = torch.zeros(0, d, device=device)
        self.p, self.ea, self.eas = z, z.clone(), z.clone()
        self.t = torch.zeros(0, device=device)    # steps of the current attempt (AdamW's t)
        self.off = torch.zeros(0, device=device)  # steps of earlier attempts

    def __len__(self):
        return self.p.shape[0]

    def add(self, vecs: torch.Tensor):
        vecs = vecs.to(self.device, torch.float32)
        self.p = torch.cat([self.p, vecs])
        zeros = torch.zeros_like(vecs)
        self.ea = torch.cat([self.ea, zeros])
        self.eas = torch.cat([self.eas, zeros.clone()])
        self.t = torch.cat([self.t, torch.zeros(len(vecs), device=self.device)])
        self.off = torch.cat([self.off, torch.zeros(len(vecs), device=self.device)])

    def keep(self, idx: torch.Tensor):
        self.p, self.ea, self.eas, self.t = self.p[idx], self.ea[idx], self.eas[idx], self.t[idx]
        self.off = self.off[idx]

    def reset(self, j: int, vec: torch.Tensor):
        """Vector j starts a new attempt at `vec` with fresh optimiser state."""
        self.p[j] = vec.reshape(-1).to(self.device, torch.float32)
        self.ea[j] = 0
        self.eas[j] = 0
        self.off[j] += self.t[j]
        self.t[j] = 0

    def steps(self) -> torch.Tensor:
        return self.t + self.off

    @torch.no_grad()
    def step(self, grad: torch.Tensor, recipe: Recipe,
             lr_of: Callable[[torch.Tensor], torch.Tensor] | None = None):
        """torch.optim.AdamW's update, vectorised with a step count per vector. lr_of maps the
        vectors' step counts to their lrs [R] (default: the recipe's lr and schedule)."""
        self.t += 1
        t = self.t.unsqueeze(1)
        lr = (lr_of(self.t) if lr_of else recipe.lr * lr_factor(recipe, self.t)).unsqueeze(1)
        self.p.mul_(1 - lr * recipe.weight_decay)
        self.ea.lerp_(grad, 1 - recipe.beta1)
        self.eas.mul_(recipe.beta2).addcmul_(grad, grad, value=1 - recipe.beta2)
        bc1 = 1 - recipe.beta1 ** t
        bc2 = 1 - recipe.beta2 ** t
        denom = (self.eas / bc2).sqrt_().add_(recipe.eps)
        self.p.addcdiv_(self.ea, denom * bc1 / lr, value=-1.0)


class _Best:
    """Each active row's most accurate state so far (ties: the lower loss): a row that stops
    unsolved reports it, never a last step that is worse than where it had been."""

    def __init__(self, d: int, device):
        self.acc = torch.zeros(0, device=device)
        self.loss = torch.zeros(0, device=device)
        self.e = torch.zeros(0, d, device=device)
        self.m = torch.zeros(0, d, device=device)

    def add(self, n: int):
        dev, d = self.acc.device, self.e.shape[1]
        self.acc = torch.cat([self.acc, torch.full((n,), -1.0, device=dev)])
        self.loss = torch.cat([self.loss, torch.full((n,), float("inf"), device=dev)])
        self.e = torch.cat([self.e, torch.zeros(n, d, device=dev)])
        self.m = torch.cat([self.m, torch.zeros(n, d, device=dev)])

    def keep(self, idx: torch.Tensor):
        self.acc, self.loss = self.acc[idx], self.loss[idx]
        self.e, self.m = self.e[idx], self.m[idx]

    @torch.no_grad()
    def update(self, acc, loss, e, m):
        better = (acc > self.acc) | ((acc == self.acc) & (loss < self.loss))
        self.acc = torch.where(better, acc, self.acc)
        self.loss = torch.where(better, loss, self.loss)
        self.e[better] = e[better].float()
        if m is not None:
            self.m[better] = m[better].float()


@dataclasses.dataclass
class _Unit:
    rows: list[int]          # indices into the input row list
    key: str
    restart: int


class _Outcomes:
    """Each input row's result, and the batch rows that work for it.

    With tail restarts an input row runs as several batch rows: its own, then extra seeds of
    its text appended after the input's rows. The first of them to solve is its result and the
    others are cancelled; if all stop unsolved, the most accurate one is.
    """

    def __init__(self, rows: list[FitRow], tail: int):
        self.rows, self.tail = rows, tail
        self.origin: dict[int, int] = {}          # tail row -> the input row it refits
        self.alive: dict[int, set[int]] = {}      # input row -> its rows now in the batch
        self.pending: dict[int, list[FitResult]] = {}  # input row -> its rows stopped unsolved
        self.cancel: set[int] = set()             # rows to drop: a sibling settled their text
        self.n_extra: dict[int, int] = {}         # input row -> tail rows made for it
        self.results: dict[int, FitResult] = {}   # input row -> its result
        self.solved_keys: set[str] = set()

    def of(self, ri: int) -> int:
        return self.origin.get(ri, ri)

    def admitted(self, ri: int) -> None:
        self.alive.setdefault(self.of(ri), set()).add(ri)

    def finish(self, ri: int, res: FitResult) -> None:
        """Row ri stopped with res; settle its input row's result once that is decided."""
        o = self.of(ri)
        if o in self.results:
            return
        family = self.alive.setdefault(o, set())
        family.discard(ri)
        if not res.solved and family:
            self.pending.setdefault(o, []).append(res)
            return
        best = res if res.solved else max(self.pending.pop(o, []) + [res],
                                          key=lambda r: r.accuracy)
        self.results[o] = dataclasses.replace(best, index=o)
        if res.solved:
            self.solved_keys.add(self.rows[o].key)
        self.cancel.update(family)

    def stragglers(self, age: dict[int, float], after: float) -> list[int]:
        """Input rows whose text may get a tail restart now: a row of it has run `after` x
        the median steps of the solved texts (after = 0: every unsolved text)."""
        if after:
            done = sorted(r.steps for r in self.results.values() if r.solved)
            if not done:
                return []
            bar = after * done[len(done) // 2]
            late = {self.of(ri) for ri, a in age.items() if a >= bar}
        else:
            late = set(self.alive)
        return [o for o in late if self.alive.get(o) and o not in self.results
                and self.n_extra.get(o, 0) < self.tail]

    def add_tail_rows(self, free: int, late: list[int]) -> list[int]:
        """Append up to `free` extra seeds of the texts in `late`, round robin, those with the
        fewest rows running first; returns the new rows' indices."""
        fams = sorted(late, key=lambda o: (len(self.alive[o]), o))
        new: list[int] = []
        while len(new) < free and fams:
            for o in list(fams):
                if len(new) == free:
                    break
                self.n_extra[o] = self.n_extra.get(o, 0) + 1
                ri = len(self.rows)
                self.rows.append(FitRow(self.rows[o].token_ids, self.rows[o].key,
                                        self.rows[o].restart + 1000 * self.n_extra[o]))
                self.origin[ri] = o
                new.append(ri)
                if self.n_extra[o] >= self.tail:
                    fams.remove(o)
        return new


@dataclasses.dataclass
class FirstAttempt:
    """A row's first attempt from a text-dependent start (refinement from an encoder's e): it
    starts at starts(row) plus `recipe.init_std` noise and runs at `recipe`'s lr and schedule
    (the optimiser's betas and weight decay stay the fitter's). After `recipe.restart_after`
    unsolved steps (0 = never) the row starts again where the fitter's own recipe starts (e0
    plus its noise) and runs that recipe; tail restarts of its text start there too. A start
    that is mostly right wants small constant steps; one that is wrong is no better a place to
    start again than e0 (docs/research/encoder-starts)."""
    starts: Callable[[FitRow], torch.Tensor]
    recipe: Recipe


class Fitter:
    """Fits proto-tokens for rows of token ids with one frozen model and one recipe."""

    def __init__(self, lm: LoadedModel, recipe: Recipe, batch_size: int = 16, seed: int = 0,
                 e_center: torch.Tensor | None = None, tail_restarts: int = 0,
                 tail_after: float = 1.5):
        """e_center: start each e at this vector plus the recipe's init noise (e.g. the mean of
        e's fitted with the same frozen m), instead of at the origin.
        tail_restarts: extra restarts per text that may fill idle batch rows once no row waits
        (module docstring); 0 = never. Not used with 'unit' groups. tail_after: the straggler
        rule's multiple of the median solved steps (0 = back up every unsolved text)."""
        if tail_restarts < 0 or tail_after < 0:
            raise ValueError("tail_restarts and tail_after must be >= 0")
        self.lm, self.recipe, self.batch_size, self.seed = lm, recipe, batch_size, seed
        self.tail_restarts, self.tail_after = tail_restarts, tail_after
        self.e_center = None if e_center is None else e_center.detach().float().cpu()
        # The recipe's learned (e0, m0): used as a pair, so not when e or m is frozen (each was
        # learned together with the other trained); an explicit e_center wins over e0.
        self.start = load_start(recipe.start, lm, recipe.arrangement, recipe.prefix)
        # Optional text-dependent start: row -> {"e": delta, "m": delta} added to the centre of a
        # row's own vectors (an amortised start; research probes set it).
        self.row_center: Callable[[FitRow], dict[str, torch.Tensor]] | None = None
        self.first: FirstAttempt | None = None   # start_rows_at
        self.arr = Arrangement(recipe.arrangement, prefix_ids(lm.tokenizer, recipe.prefix))
        self.d = lm.d_model
        self.device = lm.device
        self.std = recipe.init_std or embedding_std(lm)
        self.onepass = OnePass(lm, self.arr)
        self.margin = stop_margin(recipe, lm.dtype)

    def check_length(self, n: int):
        self.onepass.check_length(n)

    def fit(self, rows: list[FitRow], *, e_mode: ShareMode = "row", m_mode: ShareMode = "row",
            group_size: int = 1, m: torch.Tensor | None = None, e: torch.Tensor | None = None,
            race: bool = False, progress: Callable[[dict], None] | None = None,
            max_steps: int | None = None, trace: tuple[int, ...] = (),
            verify: bool = True) -> list[FitResult]:
        """Fit every row; returns one FitResult per row, in input order.

        e_mode/m_mode: 'row' (own vector per row), 'unit' (shared by the rows of a group of
        `group_size`, trained jointly), 'frozen' (the given vector, not trained).
        race: restarts of one text compete; the first to solve ends its siblings ('dropped').
        trace: step counts K at which each row's accuracy is recorded (FitResult.trace), e.g.
        (0, 1, 2, 5, 10, 20) for a refinement curve; 0 is the start itself.
        verify: decode every result as a solution file is decoded (OnePass.decode) and report
        a solved row that does not read back as 'unverified', unsolved, with what it decodes.
        """
        if "unit" not in (e_mode, m_mode):
            group_size = 1
        if m_mode == "frozen" and m is None and self.arr.uses_m:
            raise ValueError("m_mode='frozen' needs m")
        if e_mode == "frozen" and e is None:
            raise ValueError("e_mode='frozen' needs e")
        if group_size > self.batch_size:
            raise ValueError(f"group_size {group_size} exceeds batch_size {self.batch_size}")
        if self.first is not None and e_mode != "row":
            raise ValueError("start_rows_at needs e_mode='row' (each row its own e)")
        for r in rows:
            self.check_length(len(r.token_ids))
        b = _Batch(self, list(rows), {"e": e_mode, "m": m_mode}, {"e": e, "m": m},
                   group_size, race, max_steps or self.recipe.max_steps, trace)
        n_in, t_start, step_no = len(rows), time.time(), 0
        b.admit()
        while b.row_idx:
            dt = b.step()
            step_no += 1
            if progress is not None:
                results = b.outcomes.results
                progress({"step": step_no, "done": len(results), "total": n_in,
                          "solved": sum(r.solved for r in results.values()),
                          "active": len(b.row_idx), "seconds": time.time() - t_start,
                          "step_seconds": dt})
        results = [b.outcomes.results[i] for i in range(n_in)]
        return self.verified(rows, results) if verify else results

    def verified(self, rows: list[FitRow], results: list[FitResult]) -> list[FitResult]:
        """The results with every solved row decoded back in one pass, in file order: a row
        that does not reproduce its text is not solved, whatever the batch said."""
        if not any(r.solved for r in results):
            return results
        # rows a sibling restart settled carry no vectors; zeros keep the file's batch shape
        zero = torch.zeros(self.d)
        e = torch.stack([r.e if r.status != "dropped" else zero for r in results])
        m = (torch.stack([r.m if r.m is not None else zero for r in results])
             if self.arr.uses_m else None)
        toks = [r.token_ids for r in rows]
        preds = self.onepass.decode(e, m, toks)
        out = []
        for r, t, p in zip(results, toks, preds):
            c = sum(a == b for a, b in zip(p, t))
            if r.solved and c < len(t) * self.recipe.target_accuracy - 1e-9:
                r = dataclasses.replace(r, solved=False, status="unverified",
                                        accuracy=c / len(t), c_tokens=c)
            out.append(r)
        return out

    def dropped(self, rows, ri, secs=0.0, steps=0) -> FitResult:
        """The result of a row ended because a sibling restart of its text solved first."""
        return FitResult(index=ri, key=rows[ri].key, restart=rows[ri].restart,
                         e=torch.full((self.d,), float("nan")), m=None, accuracy=0.0, c_tokens=0,
                         n_tokens=len(rows[ri].token_ids), loss=float("nan"), steps=steps,
                         seconds=secs, solved=False, status="dropped")


class _Batch:
    """One fit's state: the units waiting and active, the active rows' vectors (per row or per
    unit), their padded tokens, and the outcomes. `step()` is one optimisation step of every
    active row; finished units leave the batch and waiting ones take their place."""

    def __init__(self, fitter: Fitter, rows: list[FitRow], modes: dict, fixed: dict,
                 group_size: int, race: bool, max_steps: int, trace: tuple[int, ...] = ()):
        self.f, self.recipe, self.rows = fitter, fitter.recipe, rows
        self.trace_at = set(trace)
        self.traces: dict[int, dict[int, float]] = {}
        self.modes, self.fixed, self.race, self.max_steps = modes, fixed, race, max_steps
        # tail restarts append their rows after the input's; they need single-row units
        self.tail = fitter.tail_restarts if group_size == 1 and "row" in modes.values() else 0
        self.outcomes = _Outcomes(rows, self.tail)
        # Units: groups of rows that share the 'unit'-mode vector. Sorting by length keeps a
        # batch's lengths similar; groups are consecutive rows in the caller's order.
        if group_size == 1:
            order = sorted(range(len(rows)), key=lambda i: (len(rows[i].token_ids), i))
            self.units = [_Unit([i], rows[i].key, rows[i].restart) for i in order]
        else:
            self.units = [_Unit(list(range(s, min(s + group_size, len(rows)))),
                                f"group{s // group_size}", 0)
                          for s in range(0, len(rows), group_size)]
        self.waiting = list(range(len(self.units)))[::-1]  # pop() from the end = next unit
        d, dev = fitter.d, fitter.device
        self.tabs = {k: RowAdam(d, dev, modes[k] != "frozen") for k in ("e", "m")}
        self.row_idx: list[int] = []     # active row -> input row index
        self.row_unit: list[int] = []    # active row -> index into active units
        self.unit_ids: list[int] = []    # active unit -> units[] index
        self.tokens = torch.zeros(0, 0, dtype=torch.long, device=dev)
        self.n_tok = torch.zeros(0, dtype=torch.long, device=dev)
        self.row_secs: dict[int, float] = {}
        self.row_attempt: dict[int, int] = {}
        self.best = _Best(d, dev)
        # restarts need single-row units (no 'unit' mode) with a row vector to re-draw
        self.restart_after = (self.recipe.restart_after if "unit" not in modes.values()
                              and "row" in modes.values() else 0)
        use_start = fitter.start is not None and ("frozen" not in modes.values()
                                                  or self._m_is_m0(fitter.start[1]))
        self.center = {"e": fitter.e_center if fitter.e_center is not None else
                       (fitter.start[0] if use_start else None),
                       "m": fitter.start[1] if use_start else None}
        self.first = fitter.first

    def _m_is_m0(self, m0: torch.Tensor) -> bool:
        """m frozen at the learned start's m0, e trained: e0 is still e's partner there."""
        m = self.fixed["m"]
        return (self.modes["e"] != "frozen" and self.modes["m"] == "frozen" and m is not None
                and torch.equal(m.detach().float().cpu().reshape(-1), m0.float().cpu()))

    def in_first(self, ri: int) -> bool:
        """Row ri runs its first attempt from FirstAttempt.starts (tail rows never do)."""
        return (self.first is not None and self.row_attempt.get(ri, 0) == 0
                and ri not in self.outcomes.origin)

    # ------------------------------------------------------------ vectors and admission

    def vec_init(self, kind: str, unit: _Unit, ridx: int | None, attempt: int = 0):
        f, d = self.f, self.f.d
        if self.fixed[kind] is not None and self.modes[kind] == "frozen":
            return self.fixed[kind].detach().float().reshape(1, d)
        row = self.rows[ridx] if ridx is not None else None
        key, rs = (row.key, row.restart) if row is not None else (unit.key, unit.restart)
        # Paper scheme: N(0, init_std); default init_std is the embedding std.
        what = kind if attempt == 0 else f"{kind}#{attempt}"
        if kind == "e" and row is not None and attempt == 0 and self.first is not None \
                and ridx not in self.outcomes.origin:
            std = self.first.recipe.init_std or f.std
            v = init_vector(row_seed(f.seed, key, rs, what), d, std)
            return (v + self.first.starts(row).detach().float().cpu().reshape(d)).reshape(1, d)
        v = init_vector(row_seed(f.seed, key, rs, what), d, f.std)
        if self.center[kind] is not None:
            v = v + self.center[kind]
        elif kind == "e" and row is not None and self.first is not None:
            # no e0 pairs with this frozen m: the provider's e is still the better centre
            v = v + self.first.starts(row).detach().float().cpu().reshape(d)
        if f.row_center is not None and row is not None:
            delta = f.row_center(row).get(kind)
            if delta is not None:
                v = v + delta.detach().float().cpu().reshape(d)
        if kind == "e" and self.recipe.e_init == "tokens" and row is not None:
            with torch.no_grad():
                mean = f.lm.embed(torch.tensor(row.token_ids, dtype=torch.long)).float()
                mean = mean.mean(0).cpu()
            v = v + mean * (f.std * math.sqrt(d) / float(mean.norm().clamp(min=1e-12)))
        return v.reshape(1, d)

    def lead(self) -> RowAdam:
        """The per-row table whose step counts are the rows' ages."""
        return self.tabs["e"] if self.modes["e"] == "row" else self.tabs["m"]

    def add_tail_rows(self) -> bool:
        """Queue extra restarts of stragglers for the batch's free rows."""
        free = self.f.batch_size - len(self.row_idx)
        if free <= 0:
            return False
        after = self.f.tail_after
        age = dict(zip(self.row_idx, self.lead().steps().tolist())) if after else {}
        new = self.outcomes.add_tail_rows(free, self.outcomes.stragglers(age, after))
        for ri in new:
            self.units.append(_Unit([ri], self.rows[ri].key, self.rows[ri].restart))
            self.waiting.insert(0, len(self.units) - 1)
        return bool(new)

    def admit(self):
        """Fill the batch with waiting units (and tail restarts once none waits)."""
        while self.waiting or (self.tail and self.add_tail_rows()):
            u = self.units[self.waiting[-1]]
            if self.race and u.key in self.outcomes.solved_keys:
                self.waiting.pop()
                for ri in u.rows:
                    self.outcomes.finish(ri, self.f.dropped(self.rows, ri))
                continue
            if len(self.row_idx) + len(u.rows) > self.f.batch_size:
                break
            self._add_unit(u, self.waiting.pop())

    def _add_unit(self, u: _Unit, u_id: int):
        uid = len(self.unit_ids)
        self.unit_ids.append(u_id)
        for kind in ("e", "m"):
            mode, tab = self.modes[kind], self.tabs[kind]
            if mode == "row":
                tab.add(torch.cat([self.vec_init(kind, u, ri) for ri in u.rows]))
            elif mode == "unit" or len(tab) == 0:   # frozen: one vector for every row
                tab.add(self.vec_init(kind, u, None))
        new = [self.rows[ri].token_ids for ri in u.rows]
        L = max([self.tokens.shape[1]] + [len(t) for t in new])
        tokens = F.pad(self.tokens, (0, L - self.tokens.shape[1]), value=-100)
        add = torch.full((len(new), L), -100, dtype=torch.long)
        for j, t in enumerate(new):
            add[j, : len(t)] = torch.tensor(t, dtype=torch.long)
        self.tokens = torch.cat([tokens, add.to(tokens.device)])
        self.n_tok = torch.cat([self.n_tok, torch.tensor([len(t) for t in new],
                                                         device=self.n_tok.device)])
        self.best.add(len(new))
        for ri in u.rows:
            self.outcomes.admitted(ri)
            self.row_idx.append(ri)
            self.row_unit.append(uid)
            self.row_secs[ri] = 0.0
            self.row_attempt[ri] = 0

    # ------------------------------------------------------------ one step

    def step(self) -> float:
        """One optimisation step of every active row; returns its seconds."""
        t0 = time.perf_counter()
        ru = torch.tensor(self.row_unit, device=self.tokens.device)
        leaves, per_row = self._leaves(ru)
        tgt = self.tokens[:, :int(self.n_tok.max())]
        logits = self.f.onepass.logits(per_row["e"], per_row["m"], tgt.shape[1], tgt)
        loss_r, hits = row_losses(logits, tgt, self.n_tok, loss=self.recipe.loss,
                                  wrong_weight=self.recipe.wrong_weight)
        lead = token_margins(logits.detach(), tgt)
        held = hits & (lead >= self.f.margin)
        train = [leaves[k] for k in ("e", "m") if self.tabs[k].trainable]
        finite = torch.isfinite(loss_r)
        grads = torch.autograd.grad(torch.where(finite, loss_r, 0).sum(), train,
                                    allow_unused=True) if train else []
        acc = hits.sum(1).float() / self.n_tok.float()
        self.best.update(acc, loss_r.detach(), per_row["e"].detach(),
                         per_row["m"].detach() if per_row["m"] is not None else None)
        if self.trace_at:
            self._trace(acc)
        solved_u, nan_u, unit_steps = self._unit_state(
            ru, held.sum(1).float() / self.n_tok.float(), finite)
        done_u = solved_u | (unit_steps >= self.max_steps) | nan_u
        dt = time.perf_counter() - t0
        for ri in self.row_idx:
            self.row_secs[ri] += dt / len(self.row_idx)
        if bool(done_u.any()):
            self._report(done_u, solved_u, nan_u, unit_steps, per_row, acc, hits, loss_r,
                         lead.min(1).values)
        # Update the parameters of units that go on (finished ones are dropped below).
        for k, g in zip([k for k in ("e", "m") if self.tabs[k].trainable], grads):
            if g is not None:
                lr_of = self._row_lr() if k == "e" and self.first is not None else None
                self.tabs[k].step(torch.nan_to_num(g), self.recipe, lr_of)
        if self.restart_after or self.first is not None:
            self._restart_stalled(done_u)
        self._drop(done_u, unit_steps, ru)
        return dt

    def _row_lr(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """Per active row: the first attempt's lr and schedule, or the recipe's."""
        first = torch.tensor([self.in_first(ri) for ri in self.row_idx],
                             device=self.tokens.device)
        fr, r = self.first.recipe, self.recipe
        return lambda t: torch.where(first, fr.lr * lr_factor(fr, t), r.lr * lr_factor(r, t))

    def _trace(self, acc: torch.Tensor):
        """Record each active row's accuracy at the traced step counts it is at now."""
        for j, (ri, k) in enumerate(zip(self.row_idx, self.lead().steps().tolist())):
            if int(k) in self.trace_at:
                self.traces.setdefault(ri, {})[int(k)] = float(acc[j])

    def _leaves(self, ru: torch.Tensor) -> tuple[dict, dict]:
        """Each table's leaf tensor, and its vector for every active row."""
        leaves, per_row = {}, {}
        for kind in ("e", "m"):
            tab = self.tabs[kind]
            leaf = leaves[kind] = tab.p.detach().requires_grad_(tab.trainable)
            if self.modes[kind] == "row":
                per_row[kind] = leaf
            elif self.modes[kind] == "unit":
                per_row[kind] = leaf[ru]
            else:
                per_row[kind] = leaf.expand(len(self.row_idx), self.f.d)
        return leaves, per_row

    def _unit_state(self, ru, acc, finite):
        """Per active unit: all rows at the target, any row NaN, steps taken. A unit is done
        when all its rows hit the target, or at the step cap, or on NaN."""
        n_u = len(self.unit_ids)

        def per_unit(v):
            return torch.zeros(n_u, device=ru.device).index_add_(0, ru, v.float())
        ok = per_unit(acc >= self.recipe.target_accuracy - 1e-9) == per_unit(torch.ones_like(acc))
        return ok, per_unit(~finite) > 0, self._unit_steps(ru, n_u)

    def _unit_steps(self, ru, n_units) -> torch.Tensor:
        """Steps taken by each active unit (from whichever vector is trained)."""
        for kind in ("e", "m"):
            if self.modes[kind] == "unit":
                return self.tabs[kind].steps()
        for kind in ("e", "m"):
            if self.modes[kind] == "row":
                # rows of a unit start together, so any row's count is the unit's
                out = torch.zeros(n_units, device=ru.device)
                out[ru] = self.tabs[kind].steps()
                return out
        return torch.full((n_units,), float("inf"), device=ru.device)

    def _report(self, done_u, solved_u, nan_u, unit_steps, per_row, acc, hits, loss_r, lead):
        """Hand the rows of finished units to the outcomes."""
        accl, cl, ll = acc.tolist(), hits.sum(1).tolist(), loss_r.detach().tolist()
        leads = lead.tolist()
        uses_m = self.f.arr.uses_m
        e, m = per_row["e"].detach(), per_row["m"]
        # an unsolved row reports its best state (rows sharing a 'unit' vector keep theirs,
        # which is one vector for the group)
        if "unit" not in self.modes.values():
            bad = ~solved_u[torch.tensor(self.row_unit, device=e.device)]
            b = self.best
            e = torch.where(bad.unsqueeze(1), b.e, e)
            m = torch.where(bad.unsqueeze(1), b.m, m) if uses_m else m
            best_acc = torch.where(bad, b.acc, acc)
            accl = best_acc.tolist()
            cl = (best_acc * self.n_tok).round().tolist()
            ll = torch.where(bad, b.loss, loss_r.detach()).tolist()
        for j, ri in enumerate(self.row_idx):
            uj = self.row_unit[j]
            if not bool(done_u[uj]):
                continue
            status = ("ok" if bool(solved_u[uj]) else
                      "nan" if bool(nan_u[uj]) else "max_steps")
            row = self.rows[ri]
            self.outcomes.finish(ri, FitResult(
                index=ri, key=row.key, restart=row.restart,
                e=e[j].float().cpu().clone(),
                m=m[j].detach().float().cpu().clone() if uses_m else None,
                accuracy=accl[j], c_tokens=int(cl[j]), n_tokens=len(row.token_ids),
                loss=ll[j], steps=int(unit_steps[uj]), seconds=self.row_secs[ri],
                solved=bool(solved_u[uj]), status=status,
                attempts=self.row_attempt[ri] + 1, trace=self._row_trace(ri, solved_u[uj]),
                margin=leads[j]))

    def _row_trace(self, ri: int, solved) -> dict[int, float]:
        tr = dict(self.traces.pop(ri, {}))
        if bool(solved) and tr:
            tr.update({k: 1.0 for k in self.trace_at if k > max(tr)})
        return dict(sorted(tr.items()))

    def _restart_stalled(self, done_u):
        """Re-draw the vectors of rows that ran restart_after steps unsolved. Units are single
        rows here, so active row j is unit j and table entry j. A row whose budget is spent is
        reported next step with what it reached, not with a fresh init."""
        lead = self.lead()
        after = torch.tensor([self._restart_after(ri) for ri in self.row_idx],
                             device=lead.t.device, dtype=lead.t.dtype)
        fresh = (after > 0) & (lead.t >= after) & ~done_u & (lead.steps() < self.max_steps)
        for j in fresh.nonzero().flatten().tolist():
            ri = self.row_idx[j]
            self.row_attempt[ri] += 1
            for kind in ("e", "m"):
                if self.modes[kind] == "row":
                    self.tabs[kind].reset(j, self.vec_init(kind, self.units[self.unit_ids[j]],
                                                           ri, self.row_attempt[ri]))

    def _restart_after(self, ri: int) -> int:
        if self.in_first(ri) and "unit" not in self.modes.values():
            return self.first.recipe.restart_after
        return self.restart_after

    def _drop(self, done_u, unit_steps, ru):
        """Drop finished units (and, in a race, siblings of a text that just solved; with tail
        restarts, rows whose text a sibling settled), then refill the batch."""
        keep_u = ~done_u
        solved_keys = self.outcomes.solved_keys
        if self.race and solved_keys:
            for uj, u_id in enumerate(self.unit_ids):
                u = self.units[u_id]
                if bool(keep_u[uj]) and u.key in solved_keys:
                    keep_u[uj] = False
                    for ri in u.rows:
                        self.outcomes.finish(ri, self.f.dropped(
                            self.rows, ri, self.row_secs.get(ri, 0.0), int(unit_steps[uj])))
        if self.outcomes.cancel:
            # units are single rows whenever tail rows exist
            for uj, u_id in enumerate(self.unit_ids):
                if self.units[u_id].rows[0] in self.outcomes.cancel:
                    keep_u[uj] = False
            self.outcomes.cancel.clear()
        if not bool(keep_u.all()):
            self._keep(keep_u, ru)
            self.admit()
        elif self.tail and len(self.row_idx) < self.f.batch_size:
            self.admit()   # a text may have become a straggler

    def _keep(self, keep_u, ru):
        kr = keep_u[ru].nonzero().squeeze(1)
        ku = keep_u.nonzero().squeeze(1)
        remap = torch.full((len(self.unit_ids),), -1, dtype=torch.long)
        remap[ku.cpu()] = torch.arange(len(ku))
        for kind in ("e", "m"):
            if self.modes[kind] == "row":
                self.tabs[kind].keep(kr)
            elif self.modes[kind] == "unit":
                self.tabs[kind].keep(ku)
        kr_l = kr.tolist()
        self.row_idx = [self.row_idx[j] for j in kr_l]
        self.row_unit = [int(remap[self.row_unit[j]]) for j in kr_l]
        self.unit_ids = [self.unit_ids[j] for j in ku.tolist()]
        self.tokens, self.n_tok = self.tokens[kr], self.n_tok[kr]
        self.best.keep(kr)
        self.tokens = self.tokens[:, : int(self.n_tok.max()) if len(self.n_tok) else 0]


def start_rows_at(fitter: Fitter, starts: Callable[[FitRow], torch.Tensor],
                  recipe: Recipe | str = "refine") -> None:
    """Make each row's first attempt start at starts(row) and run `recipe` (FirstAttempt;
    default the `refine` recipe); a row it does not solve goes on from e0 with the fitter's."""
    fitter.first = FirstAttempt(starts, get_recipe(recipe) if isinstance(recipe, str)
                                else recipe)


def fit_texts(lm: LoadedModel, token_lists: list[list[int]], recipe: Recipe | str = "default",
              *, restarts: int = 1, keys: list[str] | None = None, batch_size: int = 16,
              seed: int = 0, m: torch.Tensor | None = None, race: bool = False,
              progress=None) -> list[FitResult]:
    """Convenience: fit each text with `restarts` rows (per-row m, or the given frozen m)."""
    if isinstance(recipe, str):
        recipe = get_recipe(recipe)
    keys = keys or [hashlib.sha256(str(t).encode()).hexdigest()[:16] for t in token_lists]
    rows = [FitRow(list(t), k, r) for t, k in zip(token_lists, keys) for r in range(restarts)]
    fitter = Fitter(lm, recipe, batch_size=batch_size, seed=seed)
    return fitter.fit(rows, m_mode="frozen" if m is not None else "row", m=m, race=race,
                      progress=progress)


def fit_shared_m(lm: LoadedModel, token_lists: list[list[int]], recipe: Recipe | str = "default",
                 *, steps: int = 300, seed: int = 0, batch_size: int | None = None,
                 progress=None) -> tuple[torch.Tensor, list[FitResult]]:
    """Fit one m jointly with the e's of a warm-up set of texts; returns (m [d], results).

    This is the corpus recipe of design.md: fit m once on warm-up texts, freeze it, then fit
    only e for every other text.
    """
    if isinstance(recipe, str):
        recipe = get_recipe(recipe)
    rows = [FitRow(list(t), f"warm{i}", 0) for i, t in enumerate(token_lists)]
    fitter = Fitter(lm, recipe, batch_size=batch_size or len(rows), seed=seed)
    res = fitter.fit(rows, e_mode="row", m_mode="unit", group_size=len(rows), max_steps=steps,
                     progress=progress)
    return res[0].m.clone(), res

