"""Held-out evaluation of an encoder beside the baselines, all decoded in one pass.

  python -m encoder.evaluate --checkpoint outputs/encoder/default --corpus outputs/corpus/encoder
  python -m encoder.evaluate --checkpoint default --corpus outputs/corpus/encoder knn=minilm
  python -m encoder.evaluate --checkpoint outputs/encoder/variants/minilm-decode "lengths=[8,16]"
  python -m encoder.evaluate --checkpoint outputs/encoder/tiny --corpus outputs/corpus/tiny-enc \\
      mlflow=false                                           # tiny CPU run (seconds)
  python -m encoder.evaluate --checkpoint default --corpus outputs/corpus/speedup texts=all
      # every text of a corpus the encoder never trained on, baselines from its own corpus
  python -m encoder.evaluate --checkpoint outputs/encoder/positional texts=stream \\
      "lengths=[8,16,32,64]" limit=128     # held-out stream texts: prose windows, random tokens
  python -m encoder.evaluate --checkpoint default texts=file \\
      --texts_file configs/eval/sentences.txt   # one text per line, at its own length
  python -m encoder.evaluate --checkpoint outputs/encoder/positional curve=true refine_lr=0.5
      # accuracy and exact match after K = 0, 1, 2, 5, 10, 20 refinement steps, from the
      # encoder's e and from e0 side by side

Methods, each scored on the same held-out texts (whole contexts held out, as in training),
by metric name and the label the table prints:
  encoder    encoder: the encoder's e, decoded with its m
  optimised  fitted e: the corpus's fitted e (best restart), with the corpus's m: the ceiling
  knn        kNN over TF-IDF (or MiniLM, knn=minilm): the fitted e of the nearest TRAINING
             text by text similarity (FAISS inner product over TF-IDF of token ids, or
             MiniLM embeddings), with the corpus's m
  mean       mean fitted e: the mean fitted e of the training texts, with the corpus's m
  start      e0: the encoder's offset alone, e with f(text) = 0 (the learned start for an
             encoder with offset start, the shipped one included), with the encoder's m
  random     random e: N(0, embedding std) with the encoder's m
With refine=true it also fits held-out texts from the learned start and from the encoder's e
(the corpus's recipe, m frozen) and reports median steps and solved counts of both. With
curve=true it runs K refinement steps on the first curve_texts texts from the encoder's e
(Adam at refine_lr, no noise) and from e0 (the start recipe) and reports accuracy and exact
match after each K of curve_steps.
Per method: one-pass token accuracy, exact-match rate and C_tokens, overall, per length and
per source; for the encoder and kNN also accuracy per position and per token frequency in the
texts the encoder trained on, drawn again from its config and step (where it fails; a
stream-trained encoder has no corpus to count them in). Writes out/{config.yaml,results.json,
positions.png}. The last stdout line is JSON with eval/one_pass_acc, eval/exact_match,
eval/c_tokens and eval/<method>_acc ... for every baseline.
"""
from __future__ import annotations

import dataclasses
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from data_gen.textdist import minilm_embeddings, tfidf_vectors
from proto import config as C, solution
from proto.fit import Recipe, embedding_std, get_recipe
from proto.io import read_texts
from proto.report import write_outputs
from proto.sources import SourceError, text_id
from proto.tracking import run as mlflow_run

from . import checkpoint as ckpt, positions as P
from .config import EncoderConfig
from .core import EncoderError, check_corpus, prepare, read_corpus
from .data import Example, as_example, eval_order, make_stream
from .models import encode_tokens
from .encode import chunk_length
from .refine import REFINE_LR, compare, curves
from .seen import training_counts

METHODS = ("encoder", "optimised", "knn", "mean", "start", "random")
# what the tables print for each method; MLflow metrics keep the method names (eval/start_acc)
LABELS = {"encoder": "encoder", "optimised": "fitted e (optimised)",
          "mean": "mean fitted e (mean)", "start": "e0, the encoder's offset (start)",
          "random": "random e (random)"}


def label(method: str, knn: str = "tfidf") -> str:
    if method == "knn":
        return f"kNN over {'MiniLM' if knn == 'minilm' else 'TF-IDF'} (knn)"
    return LABELS[method]


def encode_examples(enc, examples: list[Example], device, batch_size: int = 64) -> torch.Tensor:
    return encode_tokens(enc, [x.token_ids for x in examples], [x.text for x in examples],
                         device, batch_size)


def knn_targets(train: list[Example], queries: list[Example], mode: str = "tfidf"
                ) -> list[np.ndarray]:
    """For each query, the first fitted e of its nearest training text (FAISS, cosine)."""
    import faiss  # lazy: faiss is needed only for nearest-neighbour searches
    pool = [x for x in train if x.targets is not None]
    if not pool:
        return []
    texts = [x.text for x in pool] + [x.text for x in queries]
    if mode == "minilm":
        vec = minilm_embeddings(texts)
    else:
        vec = tfidf_vectors(texts, [x.token_ids for x in pool] + [x.token_ids for x in queries]
                            ).astype(np.float32).toarray()
    vec = np.ascontiguousarray(vec, dtype=np.float32)
    faiss.normalize_L2(vec)
    index = faiss.IndexFlatIP(vec.shape[1])
    index.add(vec[: len(pool)])
    _, nn = index.search(vec[len(pool):], 1)
    return [pool[int(j)].targets[0] for j in nn[:, 0]]


def _stats(acc: torch.Tensor, examples: list[Example]) -> dict:
    n = torch.tensor([x.n for x in examples], dtype=torch.float32)
    return {"acc": float(acc.mean()), "exact": float((acc >= 1 - 1e-9).float().mean()),
            "c_tokens": float((acc * n).mean()), "texts": len(examples)}


def grouped(acc: torch.Tensor, examples: list[Example]) -> dict:
    """{'all': stats, 'N8': stats, 'source:britannica': stats, ...}"""
    out = {"all": _stats(acc, examples)}
    for key in sorted({f"N{x.n}" for x in examples} | {f"source:{x.source}" for x in examples}):
        idx = [i for i, x in enumerate(examples)
               if (key == f"N{x.n}" or key == f"source:{x.source}")]
        out[key] = _stats(acc[idx], [examples[i] for i in idx])
    return out


def baseline_es(setup, examples: list[Example], knn: str, seed: int = 0
                ) -> dict[str, tuple[torch.Tensor, torch.Tensor | None, list[Example]]]:
    """method -> (e's, m, the examples they score); baselines that need a corpus are absent
    without one, and `optimised` scores only texts the corpus solved."""
    lm, d = setup.lm, setup.lm.d_model
    out = {"start": (setup.offset.reshape(1, d).expand(len(examples), d), setup.m, examples)}
    g = torch.Generator().manual_seed(seed)
    out["random"] = (torch.randn(len(examples), d, generator=g) * embedding_std(lm),
                     setup.m, examples)
    train = setup.split.train_corpus
    if setup.corpus_m is None or not any(x.targets is not None for x in train):
        return out
    solved = [x for x in examples if x.targets is not None]
    if solved:
        out["optimised"] = (torch.from_numpy(np.stack([x.targets[0] for x in solved])),
                            setup.corpus_m, solved)
    near = knn_targets(train, examples, knn)
    out["knn"] = (torch.from_numpy(np.stack(near)), setup.corpus_m, examples)
    mean = np.concatenate([x.targets for x in train if x.targets is not None]).mean(0)
    out["mean"] = (torch.from_numpy(mean).reshape(1, d).expand(len(examples), d),
                   setup.corpus_m, examples)
    return out


def score(decoder, e: torch.Tensor, m, examples: list[Example]) -> dict:
    acc = decoder.accuracy(e.to(decoder.lm.device), m, [x.token_ids for x in examples])
    return grouped(acc, examples)


def units_of(examples: list[Example], size: int) -> tuple[list[dict] | None, list[list[int]]]:
    """(chunk rows or None, the token lists the encoder encodes): chunks of `size` tokens of
    every text, or the whole texts for size 0."""
    toks = [x.token_ids for x in examples]
    if not size:
        return None, toks
    chunks = solution.chunk_rows(toks, size)
    return chunks, [c["token_ids"] for c in chunks]


def per_text(chunks: list[dict] | None, acc: torch.Tensor, n_texts: int) -> torch.Tensor:
    """Each text's token accuracy from its chunks' (the units' own for whole texts)."""
    if chunks is None:
        return acc
    return torch.tensor([sum(float(acc[i]) * len(chunks[i]["token_ids"]) for i in ix)
                         / sum(len(chunks[i]["token_ids"]) for i in ix)
                         for ix in solution.by_text(chunks, n_texts)])


def encoder_accuracy(enc, setup, examples: list[Example], m, size: int = 0) -> torch.Tensor:
    """Per text, the one-pass accuracy of the encoder's e's: one e per text, or one per
    chunk of `size` tokens (one encoder call over all chunks)."""
    chunks, units = units_of(examples, size)
    texts = None if chunks else [x.text for x in examples]
    e = encode_tokens(enc, units, texts, setup.lm.device, len(units) if chunks else 64)
    with enc.decoding():
        acc = setup.decoder.accuracy(e.to(setup.lm.device), m, units)
    return per_text(chunks, acc, len(examples))


def evaluate(enc, setup, examples: list[Example], knn: str = "tfidf",
             baselines: dict | None = None, size: int = 0) -> dict:
    """{method: grouped stats}; pass `baselines` (a previous result) to skip recomputing them.
    size > 0: the encoder's method encodes chunks of `size` tokens."""
    m = enc.m if enc.m is not None else setup.m
    res = {"encoder": grouped(encoder_accuracy(enc, setup, examples, m, size), examples)}
    with enc.decoding():
        if baselines is None:
            baselines = {k: score(setup.decoder, *v) for k, v in
                         baseline_es(setup, examples, knn).items()}
    res.update(baselines)
    return res


def flat_metrics(res: dict) -> dict:
    """MLflow metric names: eval/one_pass_acc, eval/exact_match, eval/c_tokens for the encoder,
    eval/<method>_acc|_exact for the baselines, and /N8, /source:... breakdowns."""
    out = {}
    for method, groups in res.items():
        for g, st in groups.items():
            suffix = "" if g == "all" else "/" + g.replace(":", "_")
            if method == "encoder":
                out[f"eval/one_pass_acc{suffix}"] = st["acc"]
                out[f"eval/exact_match{suffix}"] = st["exact"]
                out[f"eval/c_tokens{suffix}"] = st["c_tokens"]
            else:
                out[f"eval/{method}_acc{suffix}"] = st["acc"]
                out[f"eval/{method}_exact{suffix}"] = st["exact"]
    return out


def table(res: dict, knn: str = "tfidf") -> str:
    groups = list(res["encoder"])
    lines = ["| method | " + " | ".join(f"{g} acc / exact" for g in groups) + " |",
             "|---" * (len(groups) + 1) + "|"]
    for method in METHODS:
        if method not in res:
            continue
        cells = []
        for g in groups:
            st = res[method].get(g)
            cells.append("—" if st is None else f"{st['acc']:.3f} / {st['exact']:.2f}")
        lines.append(f"| {label(method, knn)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


@dataclasses.dataclass
class EvalConfig:
    checkpoint: str = "default"
    corpus: str = ""                 # '' = the corpus the encoder was trained on
    # heldout: the held-out texts of `corpus` (its training split feeds kNN and mean); all:
    # every text of `corpus` (same m) that the encoder never trained on, with kNN and mean
    # from the encoder's own training corpus, e.g. a corpus built after the encoder; stream:
    # `limit` held-out texts per kind of `stream_kinds` and length (prose windows of held-out
    # contexts, random tokens, random words); file: the lines of `texts_file`
    texts: str = "heldout"
    stream_kinds: list[str] = dataclasses.field(default_factory=lambda: ["prose", "tokens"])
    texts_file: str = ""
    knn: str = "tfidf"               # tfidf | minilm
    limit: int = 0                   # held-out texts evaluated (0 = all)
    # text lengths evaluated ([] = the encoder's training lengths; others are scored as
    # lengths it was not trained on, beside the same baselines)
    lengths: list[int] = dataclasses.field(default_factory=list)
    # refinement: fit the first refine_texts held-out texts from the learned start and from
    # the encoder's e with the corpus's recipe (cap refine_max_steps), side by side
    refine: bool = False
    refine_texts: int = 32
    refine_max_steps: int = 200
    # the refinement curve: K steps from the encoder's e (Adam at refine_lr) and from e0
    curve: bool = False
    curve_texts: int = 64
    curve_steps: list[int] = dataclasses.field(default_factory=lambda: [0, 1, 2, 5, 10, 20])
    refine_lr: float = REFINE_LR
    # tokens per e of the encoder's own method: C, auto (the checkpoint's chunk length) or 0
    # (one e per text); baselines stay one e per text
    chunk: int | str = 0
    dtype: str = ""                  # '' = the precision the encoder was trained in
    device: str = ""
    out: str = "outputs/encoder/evaluate"   # config.yaml, results.json, positions.png
    name: str = ""                   # the MLflow run's name ('' = evaluate-<checkpoint's dir>)
    mlflow: bool = True

    def __post_init__(self):
        if self.knn not in ("tfidf", "minilm"):
            raise ValueError("knn must be tfidf or minilm")
        if self.limit < 0:
            raise ValueError("limit must be >= 0")
        if self.texts not in ("heldout", "all", "stream", "file"):
            raise ValueError("texts must be heldout, all, stream or file")
        if self.texts == "all" and not self.corpus:
            raise ValueError("texts=all scores another corpus: give corpus=DIR")
        if (self.texts == "file") != bool(self.texts_file):
            raise ValueError("texts=file and texts_file=PATH go together")
        bad = set(self.stream_kinds) - {"prose", "tokens", "words"}
        if bad or not self.stream_kinds:
            raise ValueError("stream_kinds must be a non-empty subset of prose, tokens, words")
        if self.curve_texts < 1 or not self.curve_steps or min(self.curve_steps) < 0:
            raise ValueError("curve_texts must be >= 1 and curve_steps non-empty, >= 0")
        if self.refine_lr <= 0:
            raise ValueError("refine_lr must be > 0")
        if any(n < 1 for n in self.lengths):
            raise ValueError("lengths must be >= 1")
        if self.chunk != "auto" and not (isinstance(self.chunk, int) and self.chunk >= 0):
            raise ValueError(f"chunk={self.chunk!r}: give a number of tokens >= 1, auto, or 0 "
                             f"(one e per text)")
        if self.chunk and self.refine:
            raise ValueError("refine=true fits whole texts; with chunk use curve=true (or "
                             "python -m eval.chunk_table)")


def unseen_examples(setup, path: str, limit: int) -> list[Example]:
    """Every text of corpus `path` at the setup's lengths that the encoder never trained on
    (by id or tokens), in the held-out order; the corpus must share the encoder's m."""
    _, _, xs, m = read_corpus(path, setup.lm)
    ref = setup.corpus_m if setup.corpus_m is not None else setup.m
    if ref is None or not torch.equal(m, ref.float().cpu()):
        raise EncoderError(f"corpus {path} was fitted with another m than the encoder's "
                           "training corpus, so its e's are not comparable")
    seen = setup.split.train_corpus + setup.split.train_raw
    ids, toks = {x.text_id for x in seen}, {tuple(x.token_ids) for x in seen}
    keep = set(setup.lengths)
    xs = [x for x in xs if x.n in keep and x.text_id not in ids
          and tuple(x.token_ids) not in toks]
    if not xs:
        raise EncoderError(f"corpus {path} has no text of lengths {sorted(keep)} that the "
                           "encoder did not train on")
    return eval_order(xs, setup.split.cfg.seed, limit)


def trained_counts(enc, blob: dict, setup) -> tuple[Counter | None, dict]:
    """Token counts over the texts the encoder trained on, and what was counted; a note on
    stderr when the frequency buckets are left out or rest on a sample."""
    with enc.decoding():  # a stream's continuations are the plain decoder's samples
        counts, seen = training_counts(blob, setup.lm)
    why = seen.get("omitted") or seen.get("note") or (
        "counts estimated from every k-th training position" if seen.get("estimated") else "")
    if why:
        print(f"note: accuracy by token frequency: {why}", file=sys.stderr)
    return counts, seen


def positions_block(enc, setup, examples: list[Example], knn: str,
                    counts: Counter | None, size: int = 0) -> dict:
    """Accuracy by position and by training-token frequency (None: no frequency buckets),
    for the encoder (by position within a chunk when size > 0) and kNN."""

    chunks, units = units_of(examples, size)
    toks = [x.token_ids for x in examples]
    e = encode_tokens(enc, units, None if chunks else [x.text for x in examples],
                      setup.lm.device, len(units) if chunks else 64)
    with enc.decoding():
        out = {"encoder": P.breakdown(P.token_hits(setup.decoder, e, enc.m if enc.m is not None
                                                   else setup.m, units), units, counts)}
        near = knn_targets(setup.split.train_corpus, examples, knn)
        if near and setup.corpus_m is not None:
            e_knn = torch.from_numpy(np.stack(near))
            out["knn"] = P.breakdown(P.token_hits(setup.decoder, e_knn, setup.corpus_m, toks),
                                     toks, counts)
    return out


def corpus_recipe(setup) -> Recipe:
    """The recipe the corpus's e's were fitted with, which refinement fits with; a manifest
    whose recipe this version cannot rebuild (fields since removed) is an EncoderError."""
    fitted = (setup.corpus or {}).get("recipe")
    if not fitted:
        return get_recipe("default")
    try:
        return C.from_dict(Recipe, fitted, f"the recipe of corpus {setup.corpus['path']}")
    except C.ConfigError as exc:
        raise EncoderError(f"{exc}; refine=true and curve=true refit with it") from None


def refine_blocks(cfg: EvalConfig, enc, setup, examples: list[Example], recipe: Recipe,
                  size: int = 0) -> tuple[dict | None, dict | None]:
    """(refine, curve): full fits of held-out texts from the learned start and from the
    encoder's e (refine=true), and the K-step refinement curve from both (curve=true), with
    the corpus's `recipe`."""

    n = max(cfg.refine_texts if cfg.refine else 0, cfg.curve_texts if cfg.curve else 0)
    if not n:
        return None, None
    part = examples[:n]
    chunks, units = units_of(part, size)
    e = encode_tokens(enc, units, None if chunks else [x.text for x in part], setup.lm.device,
                      len(units) if chunks else 64).cpu()
    enc.release()  # the fits below need the plain decoder
    m = enc.m.detach().cpu() if enc.m is not None else setup.m
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    refined = curve = None
    if cfg.refine:
        k = cfg.refine_texts
        refined = compare(setup.lm, dataclasses.replace(recipe, max_steps=cfg.refine_max_steps),
                          [x.token_ids for x in part[:k]], e[:k], m, setup.offset, log=log)
        log(f"refinement over {len(part[:k])} texts (cap {cfg.refine_max_steps}): " + "; ".join(
            f"from {a}: {v['solved']}/{v['texts']} solved, median {v['steps_median']} steps"
            for a, v in refined.items()))
    if cfg.curve:
        k = cfg.curve_texts
        # with chunks, every chunk of the first curve_texts texts is a row, scored per text
        rows = [i for i, c in enumerate(chunks) if c["text_id"] < k] if chunks else range(k)
        rows = [i for i in rows if i < len(units)]
        curve = curves(setup.lm, recipe, [units[i] for i in rows], e[rows], m, setup.offset,
                       cfg.refine_lr, tuple(sorted(set(cfg.curve_steps))), log,
                       texts=([chunks[i] for i in rows], [x.token_ids for x in part[:k]])
                       if chunks else None)
    return refined, curve


def curve_table(curve: dict) -> str:
    ks = list(curve["encoder"])
    lines = ["| K steps | " + " | ".join(str(k) for k in ks) + " |", "|---" * (len(ks) + 1) + "|"]
    for name in ("encoder", "start"):
        lines.append(f"| from {name}: acc / exact | " + " | ".join(
            f"{curve[name][k]['acc']:.3f} / {curve[name][k]['exact']:.2f}" for k in ks) + " |")
    return "\n".join(lines)


def file_examples(path: str, lm, limit: int = 0) -> list[Example]:
    """One example per non-empty line of a UTF-8 file, at its own token length."""

    try:
        texts = read_texts([], path)
    except ValueError as exc:
        raise EncoderError(str(exc)) from None
    out = []
    for t in texts[: limit or None]:
        ids = lm.tokenize(t)
        if not ids:
            raise EncoderError(f"text {t!r} in {path} has no tokens")
        out.append(Example(text_id("file", ids), "file", "", ids, t))
    return out


def stream_examples(cfg: EvalConfig, setup) -> list[Example]:
    """`limit` (default 64) held-out stream texts of each kind of stream_kinds and length."""
    data = setup.split.cfg
    kinds = {k: (1.0 if k in cfg.stream_kinds else 0.0) for k in ("prose", "tokens", "words")}
    scfg = dataclasses.replace(data.stream, continuations=0.0, **kinds)
    # raw=[]: the stream replaces the checkpoint's own raw sources for this evaluation
    try:
        stream = make_stream(dataclasses.replace(data, raw=[], stream=scfg), setup.lengths,
                             setup.lm, set())
        return [as_example(t) for k in cfg.stream_kinds for n in setup.lengths
                for t in stream.heldout(k, n, cfg.limit or 64)]
    except SourceError as exc:
        raise EncoderError(f"texts=stream: {exc}") from None


def select_examples(cfg: EvalConfig, setup, corpus: str, enc, size: int = 0
                    ) -> list[Example]:
    if cfg.texts == "all":
        xs = unseen_examples(setup, corpus, cfg.limit)
    elif cfg.texts == "file":
        xs = file_examples(cfg.texts_file, setup.lm, cfg.limit)
    elif cfg.texts == "stream":
        xs = stream_examples(cfg, setup)
    else:
        xs = setup.split.eval_set(cfg.limit)
    longest = enc.max_tokens
    too_long = [x for x in xs if longest and x.n > longest and not size]
    if too_long:
        raise EncoderError(f"a text of {too_long[0].n} tokens is longer than the encoder's "
                           f"maximum of {longest}; chunk=C encodes it as several e's of C "
                           f"tokens")
    if not xs:
        raise EncoderError("no texts to evaluate")
    try:
        setup.decoder.check_length(max(x.n for x in xs), "a text")
    except ValueError as exc:
        raise EncoderError(str(exc)) from None
    return xs


def load_setup(cfg: EvalConfig):
    """(checkpoint blob, encoder, setup, evaluated corpus) of an evaluation config."""

    blob = ckpt.read(cfg.checkpoint)
    ecfg = C.from_dict(EncoderConfig, blob["config"])
    corpus = cfg.corpus or ecfg.data.corpus
    # evaluation has no curriculum; with texts=heldout another corpus replaces the
    # training ones, with texts=all the training corpora stay for the baselines
    own = cfg.texts == "all" or not cfg.corpus
    data = dataclasses.replace(
        ecfg.data, corpus=ecfg.data.corpus if own else corpus,
        lengths=list(cfg.lengths or ecfg.data.lengths), curriculum=[],
        extra_corpora=ecfg.data.extra_corpora if own else [])
    ecfg = dataclasses.replace(ecfg, data=data, device=cfg.device or ecfg.device)
    enc, decoder, _, blob = ckpt.load(cfg.checkpoint, device=ecfg.device, dtype=cfg.dtype)
    if corpus:
        _, arr = check_corpus(corpus, decoder.lm)
        if tuple(arr.prefix) != tuple(decoder.arr.prefix) or arr.name != decoder.arr.name:
            raise EncoderError(f"corpus {corpus} uses arrangement {arr.name} with prefix "
                               f"{list(arr.prefix)}; the encoder decodes with "
                               f"{decoder.arr.name} and {list(decoder.arr.prefix)}")
    return blob, enc, prepare(ecfg, lm=decoder.lm), corpus


def chunk_size(cfg: EvalConfig, enc, blob: dict) -> int:
    """Tokens per e of the encoder's method (0 = whole texts); EncoderError above its max."""
    try:
        return chunk_length(cfg.chunk, enc, blob) if cfg.chunk else 0
    except ValueError as exc:
        raise EncoderError(str(exc)) from None


def run_evaluation(cfg: EvalConfig, blob: dict, enc, setup, corpus: str,
                   examples: list[Example], recipe: Recipe | None
                   ) -> tuple[dict, dict, dict | None, dict | None]:
    """Score, break down, refine (refine=true) and run the refinement curve (curve=true); log
    and write. -> (res, metrics, refined, curve)"""


    name = cfg.name or f"evaluate-{Path(blob['path']).parent.name}"
    with mlflow_run("encoder", cfg, run_name=name, enabled=cfg.mlflow) as mr:
        mr.tags({"stage": "encoder-evaluate", "model": blob["llm"]["name"],
                 "corpus": corpus, "encoder": blob["path"]})
        size = chunk_size(cfg, enc, blob)
        res = evaluate(enc, setup, examples, cfg.knn, size=size)
        counts, seen = trained_counts(enc, blob, setup)
        where = positions_block(enc, setup, examples, cfg.knn, counts, size)
        metrics = flat_metrics(res)
        if size:
            metrics["eval/chunk"] = size
        refined, curve = refine_blocks(cfg, enc, setup, examples, recipe, size)
        if refined:
            metrics.update({f"refine/{k}_{f}": refined[k][f] for k in refined
                            for f in ("solved", "steps_median", "row_steps")})
        if curve:
            metrics.update({f"refine/{name}_k{k}_{f}": v[f] for name, by_k in curve.items()
                            for k, v in by_k.items() for f in ("acc", "exact")})
        mr.metrics(metrics)
        report = {"checkpoint": blob["path"], "corpus": corpus, "texts": len(examples),
                  "methods": res, "positions": where, "frequency_counts": seen,
                  "refine": refined, "curve": curve}
        write_outputs(Path(cfg.out), cfg, report, mr,
                      plots={"positions.png": lambda rep: P.plot(rep["positions"])})
    return res, metrics, refined, curve


def main(argv=None) -> int:

    cfg = C.parse_cli(EvalConfig, __doc__, argv, prog="python -m encoder.evaluate",
                      paths={"checkpoint": "encoder file, training output dir, or 'default'",
                             "corpus": "corpus directory (default: the training corpus)",
                             "texts_file": "texts=file: one text per line (UTF-8)"})
    if cfg is None:
        return 2
    t0 = time.time()
    try:
        if Path(cfg.out).exists() and not Path(cfg.out).is_dir():
            raise EncoderError(f"out {cfg.out} exists and is not a directory")
        blob, enc, setup, corpus = load_setup(cfg)
        examples = select_examples(cfg, setup, corpus, enc, chunk_size(cfg, enc, blob))
        recipe = corpus_recipe(setup) if cfg.refine or cfg.curve else None
    except (EncoderError, C.ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    res, metrics, refined, curve = run_evaluation(cfg, blob, enc, setup, corpus, examples,
                                                  recipe)
    print(table(res, cfg.knn))
    if curve:
        print(curve_table(curve))
    summary = {"checkpoint": blob["path"], "corpus": corpus, "texts": len(examples),
               **({"refine": {k: {f: v[f] for f in ("solved", "texts", "steps_median",
                                                    "row_steps")}
                              for k, v in refined.items()}} if refined else {}),
               **({"curve": {name: {str(k): [round(v["acc"], 4), round(v["exact"], 4)]
                                    for k, v in by_k.items()} for name, by_k in curve.items()}}
                  if curve else {}),
               "seconds": round(time.time() - t0, 1),
               **{k: round(v, 4) for k, v in metrics.items() if "/" not in k[5:]}}
    C.print_summary(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
