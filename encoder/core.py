"""What training, evaluation and encoding share: the decoder side, the data and the checks.

`prepare(cfg)` loads the frozen LLM, reads the corpus (refusing one made with other weights or
an arrangement that is not one-pass), decides the shared m and the offset, and splits texts.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import torch

from proto.arrangement import Arrangement, prefix_ids

from .config import EncoderConfig
from .data import Example, Split, corpus_examples, raw_pool
from .losses import Decoder


class EncoderError(ValueError):
    """A problem that ends an encoder command with one clear line (exit 2)."""


@dataclasses.dataclass
class Setup:
    lm: object
    decoder: Decoder
    split: Split
    m: torch.Tensor | None          # the m the encoder decodes with (initial value if trained)
    corpus_m: torch.Tensor | None   # the corpus's m (what its fitted e's decode with)
    offset: torch.Tensor
    lengths: list[int]
    corpus: dict | None             # manifest summary: path, fingerprint, model, m_init


def device_for(cfg_device: str) -> str | None:
    if cfg_device:
        return cfg_device
    if torch.cuda.is_available():
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return "cpu"


def load_llm(name: str, device: str, dtype: str):
    from proto.models import ModelLoadError, load_model
    try:
        return load_model(name, device=device_for(device), dtype=dtype, verbose=False)
    except ModelLoadError as exc:
        raise EncoderError(str(exc)) from None


def check_corpus(path: str, lm) -> tuple[dict, Arrangement]:
    """The corpus manifest, refused unless complete, made with lm's weights, and one-pass."""
    from data_gen.corpus import CorpusError, read_manifest
    try:
        man = read_manifest(path)
    except CorpusError as exc:
        raise EncoderError(str(exc)) from None
    if man.get("status") != "complete":
        raise EncoderError(f"corpus {path} is {man.get('status')}: rerun its build to finish it")
    theirs = man.get("model", {})
    if theirs.get("weights_sha256") != lm.weights_sha256:
        raise EncoderError(f"corpus {path} was made with model {theirs.get('name')!r} "
                           f"(weights {str(theirs.get('weights_sha256'))[:12]}), not the "
                           f"encoder's decoder {lm.name!r} ({lm.weights_sha256[:12]})")
    a = man.get("arrangement", {})
    arr = Arrangement(a.get("name", "e_m"), tuple(a.get("prefix", [])))
    if arr.autoregressive or not arr.uses_m:
        raise EncoderError(f"corpus {path} uses arrangement {arr.name!r}; the encoder needs a "
                           f"one-pass [e, m, ...] arrangement")
    return man, arr


def learned_start(lm) -> tuple[torch.Tensor, torch.Tensor] | None:
    import warnings

    from proto.start import load_start
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_start("learned", lm, "e_m", "sink")


def _m_and_offset(cfg: EncoderConfig, lm, man: dict | None, corpus_m, train: list[Example]):
    start = learned_start(lm)
    if cfg.m in ("start",) and start is None:
        raise EncoderError(f"m: start needs a learned start for {lm.name} (none shipped)")
    if cfg.m == "corpus":
        m = corpus_m
    elif cfg.m == "start":
        m = start[1]
    else:  # learned: starts where the corpus's (or the start's) m is
        m = corpus_m if corpus_m is not None else (start[1] if start else
                                                   torch.zeros(lm.d_model))
    offset = cfg.offset
    if offset == "auto":
        m_init = (man or {}).get("config", {}).get("m_init")
        from_start = (man is None or m_init == "start" or cfg.m == "start")
        offset = "start" if from_start and start is not None else "zero"
    if offset == "start":
        if start is None:
            raise EncoderError(f"offset: start needs a learned start for {lm.name}")
        off = start[0]
    elif offset == "corpus_mean":
        ts = [x.targets for x in train if x.targets is not None]
        if not ts:
            raise EncoderError("offset: corpus_mean needs solved training texts in the corpus")
        off = torch.from_numpy(np.concatenate(ts).mean(0))
    else:
        off = torch.zeros(lm.d_model)
    return m.float(), off.float()


def prepare(cfg: EncoderConfig, lm=None) -> Setup:
    lm = lm or load_llm(cfg.llm, cfg.device, cfg.dtype)
    man, corpus, corpus_m = None, [], None
    if cfg.data.corpus:
        man, arr = check_corpus(cfg.data.corpus, lm)
        from data_gen.corpus import CorpusError, load_m
        try:
            corpus = corpus_examples(cfg.data.corpus)
            corpus_m = load_m(cfg.data.corpus)[0].float()
        except (CorpusError, OSError) as exc:
            raise EncoderError(f"corpus {cfg.data.corpus}: {exc}") from None
    else:
        arr = Arrangement("e_m", prefix_ids(lm.tokenizer, "sink"))
    lengths = sorted(set(cfg.data.lengths or [x.n for x in corpus]))
    if not lengths:
        raise EncoderError("data.lengths is empty and there is no corpus to take them from")
    raw = []
    if cfg.data.raw and cfg.loss.kind != "regress":
        from data_gen.sources import SourceError
        try:
            raw = raw_pool(cfg.data, lengths, lm.tokenize, lm.detokenize)
        except SourceError as exc:
            raise EncoderError(str(exc)) from None
    try:
        split = Split(cfg.data, corpus, raw, lengths)
    except ValueError as exc:
        raise EncoderError(str(exc)) from None
    if cfg.loss.kind == "regress":
        split.train_corpus = [x for x in split.train_corpus if x.targets is not None]
        if not split.train_corpus:
            raise EncoderError("loss regress: the corpus has no solved training texts")
    m, off = _m_and_offset(cfg, lm, man, corpus_m, split.train_corpus)
    info = None
    if man is not None:
        info = {"path": str(Path(cfg.data.corpus)), "fingerprint": man.get("fingerprint"),
                "m_init": man.get("config", {}).get("m_init"), "texts": len(corpus),
                "recipe": man.get("recipe")}
    return Setup(lm, Decoder.of(lm, arr), split, m, corpus_m, off, lengths, info)
