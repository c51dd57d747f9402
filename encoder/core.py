"""What training, evaluation and encoding share: the decoder side, the data and the checks.

`prepare(cfg)` loads the frozen LLM, reads the corpus (refusing one made with other weights or
an arrangement that is not one-pass), decides the shared m and the offset, and splits texts.
"""
from __future__ import annotations

import dataclasses
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from data_gen.corpus import CorpusError, load_m, read_manifest
from proto.arrangement import Arrangement, prefix_ids
from proto.decode import sample_continuations
from proto.models import ModelLoadError, load_model
from proto.sources import SourceError
from proto.start import load_start

from .config import EncoderConfig
from .data import Example, Split, corpus_examples, make_stream, raw_pool
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


def load_llm(name: str, device: str, dtype: str, record: str | None = None, what: str = ""):
    """The frozen decoder, its precision decided by proto.models.decide_precision."""
    try:
        return load_model(name, device=device_for(device), dtype=dtype, verbose=False,
                          record=record, what=what)
    except ModelLoadError as exc:
        raise EncoderError(str(exc)) from None


def check_corpus(path: str, lm) -> tuple[dict, Arrangement]:
    """The corpus manifest, refused unless complete, made with lm's weights, and one-pass."""
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
    arr = Arrangement.from_dict(man.get("arrangement", {}))
    if arr.autoregressive or not arr.uses_m:
        raise EncoderError(f"corpus {path} uses arrangement {arr.name!r}; the encoder needs a "
                           f"one-pass [e, m, ...] arrangement")
    return man, arr


def read_corpus(path: str, lm) -> tuple[dict, Arrangement, list[Example], torch.Tensor]:
    """A checked corpus: manifest, arrangement, its texts with their e's, and its m."""
    man, arr = check_corpus(path, lm)
    try:
        return man, arr, corpus_examples(path), load_m(path)[0].float()
    except (CorpusError, OSError) as exc:
        raise EncoderError(f"corpus {path}: {exc}") from None


def merge_examples(a: list[Example], b: list[Example]) -> list[Example]:
    """a's texts then b's new ones; a text in both keeps the solved e's of both."""
    by = {x.text_id: dataclasses.replace(x) for x in a}
    for x in b:
        have = by.get(x.text_id)
        if have is None:
            by[x.text_id] = x
            continue
        ts = [t for t in (have.targets, x.targets) if t is not None]
        have.targets = np.concatenate(ts) if ts else None
        have.opt_accuracy = max(have.opt_accuracy or 0.0, x.opt_accuracy or 0.0)
    return list(by.values())


def _sampler(lm):
    """The stream's continuation sampler: the decoder's own samples (proto.decode)."""
    def generate(contexts, k, n, seed):
        return sample_continuations(lm, contexts, k, n, seed)
    return generate


def learned_start(lm) -> tuple[torch.Tensor, torch.Tensor] | None:

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


def corpus_record(cfg: EncoderConfig) -> dict:
    """The corpus's precision record for decide_precision, so its fitted e's decode as they
    were fitted; {} without a corpus."""
    if not cfg.data.corpus:
        return {}
    try:
        rec = read_manifest(cfg.data.corpus).get("precision")
    except CorpusError:
        return {}   # prepare() reports the corpus problem itself
    return {"record": rec, "what": f"corpus {cfg.data.corpus}"}


def prepare(cfg: EncoderConfig, lm=None) -> Setup:
    lm = lm or load_llm(cfg.llm, cfg.device, cfg.dtype, **corpus_record(cfg))
    man, corpus, corpus_m, extra = None, [], None, []
    if cfg.data.corpus:
        man, arr, corpus, corpus_m = read_corpus(cfg.data.corpus, lm)
        for path in cfg.data.extra_corpora:
            xman, xarr, xs, xm = read_corpus(path, lm)
            if xarr != arr or not torch.equal(xm, corpus_m):
                raise EncoderError(f"corpus {path} was fitted with another arrangement or m "
                                   f"than {cfg.data.corpus}; its e's decode with its own m")
            corpus = merge_examples(corpus, xs)
            extra.append({"path": str(Path(path)), "fingerprint": xman.get("fingerprint"),
                          "texts": len(xs)})
    else:
        arr = Arrangement("e_m", prefix_ids(lm.tokenizer, "sink"))
    lengths = sorted(set(cfg.data.lengths or [x.n for x in corpus]))
    if not lengths:
        raise EncoderError("data.lengths is empty and there is no corpus to take them from")
    decoder = Decoder.of(lm, arr)
    try:
        decoder.check_length(lengths[-1], "a text")
    except ValueError as exc:
        raise EncoderError(f"lengths {lengths}: {exc}") from None
    raw, stream = [], None
    try:
        if cfg.data.raw and cfg.loss.kind != "regress":
            raw = raw_pool(cfg.data, lengths, lm.tokenize, lm.detokenize)
        if cfg.data.stream.active and cfg.loss.kind != "regress":
            stream = make_stream(cfg.data, lengths, lm, set(), _sampler(lm))
        split = Split(cfg.data, corpus, raw, lengths, stream)
    except (SourceError, ValueError) as exc:
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
                "recipe": man.get("recipe"), "extra": extra}
    return Setup(lm, decoder, split, m, corpus_m, off, lengths, info)
