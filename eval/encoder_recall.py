"""Does the encoder's e land in the right region? Its nearest corpus solutions, by FAISS.

  python -m eval.encoder_recall --corpus outputs/eval/bench_corpus/corpora/start \\
      --checkpoint default out=outputs/eval/encoder_recall/bench-start   # the bench's corpus
  python -m eval.encoder_recall --corpus outputs/corpus/encoder \\
      --checkpoint outputs/encoder/default "ks=[0,5,20,50]"   # its held-out texts
  # tiny CPU run (seconds): a corpus with a random m, and a tiny encoder trained on it
  python -m data_gen.build --config configs/data_gen/tiny.yaml out=outputs/corpus/tiny-recall \\
      threads=1 m_init=random pairs_per_chunk=0 \\
      "sources=[{name: random-words, count: 12, lengths: [6]}, \\
                {name: britannica, count: 8, lengths: [6]}]"
  python -m encoder.train --config configs/encoder/tiny.yaml out=outputs/encoder/tiny-recall \\
      data.corpus=outputs/corpus/tiny-recall threads=1
  python -m eval.encoder_recall --corpus outputs/corpus/tiny-recall \\
      --checkpoint outputs/encoder/tiny-recall "ks=[0,5]" threads=1

Index: every solved row's e of the corpus (a data_gen.build output), in an exact FAISS L2 index
(IndexFlatL2) and an exact inner-product index over unit e's (cosine). Queries: the corpus's
texts with a solved row that the encoder never trained on (not among the training texts of its
corpora or its raw pool, by id or tokens; a stream-trained encoder's stream texts never repeat
and are not counted), the first `limit` of them. The encoder's m must equal the corpus's m, or
its e's are not comparable with the corpus's.

For each query e: the rank of the first row of the query's own text among all indexed rows by
distance (1 = strictly nearest: another text's row at the same distance counts above it),
recall@1 and @5 (the rank is <= 1, <= 5), the median and mean rank, and the distance ratio: L2
distance to its own text's nearest row / to the nearest row of another text (median; < 1 =
nearer its own text). Cosine ranks and recall@1 beside them, from the inner-product index.
Rows of e's: the encoder's e (K = 0), then its e after K refinement steps for each K > 0 of
`ks` (encoder.refine.curve with the `refine` recipe, m frozen at the encoder's m: each text's
best e of K steps); `exact` is the share of queries those e's decode exactly in one pass.
Reference rows: e0 (the learned start shipped for the model; the encoder's offset where none
is, said in the row), one constant query for every text, and chance (random order: recall@1 =
mean over queries of own rows / rows, 1 / texts with one row per text; mean rank = (rows + 1) /
(own rows + 1)). Writes out/{config.yaml,results.json,table.md,encoder_recall.png} (out
default: outputs/eval/encoder_recall/<corpus name>), MLflow experiment `eval` (run
encoder_recall-<corpus name>); the last stdout line is JSON. A missing or unfinished corpus,
no solved rows, an encoder of another m, model or arrangement, or no query texts is one
`error:` line and exit 2, and nothing is written.
"""
from __future__ import annotations

import dataclasses
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from eval import common as E
from proto import config as C

# queries x rows distances held at once by the exhaustive search
SEARCH_CELLS = 4_000_000


@dataclasses.dataclass
class EncoderRecallConfig:
    corpus: str = ""                 # corpus directory (also --corpus)
    checkpoint: str = "default"      # encoder file, training output dir or 'default'
    ks: list[int] = dataclasses.field(default_factory=lambda: [0, 5, 20])
    refine_lr: float = 0.0           # 0 = the `refine` recipe's own lr
    limit: int = 0                   # query texts (0 = all unseen texts with a solved row)
    batch_size: int = 64
    device: str = ""
    dtype: str = ""                  # '' = the precision the encoder was trained in
    threads: int = 0                 # torch / FAISS CPU threads (0 = their default)
    out: str = ""                    # '' = outputs/eval/encoder_recall/<corpus name>
    mlflow: bool = True

    def __post_init__(self):
        if not self.ks or min(self.ks) < 0:
            raise ValueError("ks must be a non-empty list of step counts >= 0")
        if self.refine_lr < 0 or self.batch_size < 1:
            raise ValueError("refine_lr must be >= 0 and batch_size >= 1")
        if self.limit < 0 or self.threads < 0:
            raise ValueError("limit and threads must be >= 0")


def out_dir(cfg: EncoderRecallConfig) -> Path:
    if cfg.out:
        return Path(cfg.out)
    return Path("outputs") / "eval" / "encoder_recall" / (Path(cfg.corpus).resolve().name
                                                          or "corpus")


# ---------------------------------------------------------------- inputs

def check_inputs(cfg: EncoderRecallConfig):
    """(the corpus's solved rows, their total, checkpoint blob) after every check that needs
    no model: the corpus is complete and has solved rows, the encoder decodes with its model,
    arrangement and m."""
    import torch

    from data_gen import corpus as K
    from encoder import checkpoint as ckpt
    from encoder.core import EncoderError
    from eval.locality import load_rows, open_corpus
    from proto.arrangement import Arrangement

    E.check_out_dir(dataclasses.replace(cfg, out=str(out_dir(cfg))))
    man = open_corpus(cfg.corpus, allow_partial=False)
    blob = ckpt.read(cfg.checkpoint)
    path = blob["path"]
    theirs = man.get("model", {}).get("weights_sha256")
    if theirs != blob["llm"]["weights_sha256"]:
        raise EncoderError(f"corpus {cfg.corpus} was made with model "
                           f"{man.get('model', {}).get('name')!r}, encoder {path} decodes "
                           f"with {blob['llm']['name']!r}")
    em = blob["state"].get("m")
    if em is None:
        raise EncoderError(f"encoder {path} has no m: its e's have no corpus to land in")
    if Arrangement.from_dict(man.get("arrangement", {})) != \
            Arrangement.from_dict(blob["arrangement"]):
        raise EncoderError(f"corpus {cfg.corpus} uses another arrangement or prefix than "
                           f"encoder {path}")
    m = K.load_m(cfg.corpus)[0].float()
    if m.shape != em.shape or not torch.allclose(m, em.float()):
        raise EncoderError(f"encoder {path} decodes with another m than corpus {cfg.corpus}, "
                           f"so its e's are not comparable with the corpus's (query a corpus "
                           f"built with the encoder's m, e.g. m_init=start for the default)")
    rows, total = load_rows(cfg.corpus, man, solved_only=True)
    return rows, total, blob


def seen_texts(blob: dict, lm) -> tuple[set[str], set[tuple[int, ...]]]:
    """(ids, token tuples) of the texts the encoder trained on: the training split of its
    corpora and of its raw pool, as encoder.core.prepare splits them for its lengths."""
    from data_gen.stream import KINDS
    from encoder.config import EncoderConfig
    from encoder.core import EncoderError, prepare

    ecfg = C.from_dict(EncoderConfig, blob["config"])
    data = ecfg.data
    if not data.corpus and not data.raw:
        return set(), set()   # stream texts only: they never repeat
    # the stream is not needed to split the corpora and the raw pool, and costs a sampler
    off = dataclasses.replace(data.stream, **{k: 0.0 for k in KINDS})
    data = dataclasses.replace(data, lengths=list(blob["lengths"]), curriculum=[], stream=off)
    try:
        setup = prepare(dataclasses.replace(ecfg, data=data), lm=lm)
    except EncoderError as exc:
        raise EncoderError(f"cannot tell which texts encoder {blob['path']} trained on: "
                           f"{exc}") from None
    seen = setup.split.train_corpus + setup.split.train_raw
    return {x.text_id for x in seen}, {tuple(x.token_ids) for x in seen}


@dataclasses.dataclass
class Queries:
    code: np.ndarray              # [q] text code of each query (Rows.text)
    ids: list[str]
    token_ids: list[list[int]]
    texts: list[str]
    seen: int                     # corpus texts with a solved row left out as trained on


def query_texts(rows, blob: dict, lm, limit: int) -> Queries:
    """The texts with a solved row that the encoder never trained on, in text-id order."""
    from encoder.core import EncoderError
    ids, toks = seen_texts(blob, lm)
    first = {}
    for i, c in enumerate(rows.text):
        first.setdefault(int(c), i)
    unseen = [i for _, i in sorted(first.items())
              if rows.text_ids[i] not in ids and tuple(rows.token_ids[i]) not in toks]
    if not unseen:
        raise EncoderError(f"every solved text of the corpus is one encoder {blob['path']} "
                           f"trained on: nothing is held out to query")
    keep = unseen[: limit or None]
    return Queries(code=rows.text[keep], ids=[rows.text_ids[i] for i in keep],
                   token_ids=[list(rows.token_ids[i]) for i in keep],
                   texts=[rows.texts[i] for i in keep], seen=len(first) - len(unseen))


# ---------------------------------------------------------------- FAISS ranks

def build_indexes(e: np.ndarray):
    """(exact L2 index, exact inner-product index over unit e's) of the corpus rows."""
    import faiss  # lazy: only the search needs it

    from eval.locality import unit
    e = np.ascontiguousarray(e, dtype=np.float32)
    l2, ip = faiss.IndexFlatL2(e.shape[1]), faiss.IndexFlatIP(e.shape[1])
    l2.add(e)
    ip.add(unit(e))
    return l2, ip


def _search_all(index, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every row's score for every query, in batches of queries that bound the memory."""
    n = index.ntotal
    step = max(1, SEARCH_CELLS // n)
    parts = [index.search(np.ascontiguousarray(q[s: s + step], dtype=np.float32), n)
             for s in range(0, len(q), step)]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def ranks(index, row_text: np.ndarray, q: np.ndarray, q_code: np.ndarray,
          similarity: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rank of the first own-text row, score of it, score of the nearest other-text row) per
    query; scores are FAISS's (squared L2, or inner product when `similarity`), +-inf where a
    query has no row of that kind. Other-text rows that tie with the own row count above it:
    rank 1 means strictly nearest (a constant zero query ties every row in cosine)."""
    score, ids = _search_all(index, q)
    same = row_text[ids] == q_code[:, None]
    bad = -np.inf if similarity else np.inf
    own = np.where(same, score, bad)
    own = own.max(1) if similarity else own.min(1)
    other = np.where(same, bad, score)
    other = other.max(1) if similarity else other.min(1)
    closer = (score >= own[:, None]) if similarity else (score <= own[:, None])
    return 1 + (closer & ~same).sum(1), own, other


def rank_stats(e: np.ndarray, l2, ip, row_text: np.ndarray, q_code: np.ndarray) -> dict:
    """Recall@1/@5, median / mean rank, the own / other distance ratio and the cosine view of
    query e's [q, d]; `rank` keeps every query's L2 rank."""
    from eval.locality import unit
    r, own, other = ranks(l2, row_text, e, q_code)
    rc, _, _ = ranks(ip, row_text, unit(e), q_code, similarity=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.sqrt(own) / np.sqrt(other)
    ratio = ratio[np.isfinite(ratio)]
    return {"recall_at_1": float(np.mean(r <= 1)), "recall_at_5": float(np.mean(r <= 5)),
            "median_rank": float(np.median(r)), "mean_rank": float(np.mean(r)),
            "distance_ratio_median": float(np.median(ratio)) if len(ratio) else None,
            "cosine_recall_at_1": float(np.mean(rc <= 1)),
            "cosine_median_rank": float(np.median(rc)), "rank": r.tolist()}


def chance_stats(row_text: np.ndarray, q_code: np.ndarray) -> dict:
    """The same under a uniformly random order of the rows."""
    from eval.locality import p_any
    n = len(row_text)
    own = np.bincount(row_text)[q_code].astype(np.float64)
    return {"recall_at_1": float(np.mean(own / n)),
            "recall_at_5": float(np.mean(p_any(np.full_like(own, n), own, 5))),
            "median_rank": None, "mean_rank": float(np.mean((n + 1) / (own + 1))),
            "distance_ratio_median": None, "cosine_recall_at_1": float(np.mean(own / n)),
            "cosine_median_rank": None, "rank": []}


# ---------------------------------------------------------------- the e's

def reference_e0(lm, enc) -> tuple[np.ndarray, str]:
    """The learned start's e0 shipped for the model, else the encoder's offset."""
    from encoder.core import learned_start
    start = learned_start(lm)
    if start is not None:
        return start[0].float().cpu().numpy(), "the learned start's e0"
    return enc.offset.detach().float().cpu().numpy().reshape(-1), "the encoder's offset"


def one_pass_exact(decoder, e, m, toks: list[list[int]]) -> float:
    import torch
    with torch.no_grad():
        acc = decoder.accuracy(torch.as_tensor(e).to(decoder.lm.device), m, toks)
    return float((acc >= 1 - 1e-9).float().mean())


def refined(lm, e_enc, m, toks: list[list[int]], k: int, lr: float, batch_size: int):
    """(each text's best e of K refinement steps [q, d], share of texts exact after K)."""
    import torch

    from encoder.refine import REFINE_LR, curve, refine_recipe
    with warnings.catch_warnings():
        # every row starts at the encoder's e: a missing learned start (the fitter's centre)
        # plays no part
        warnings.filterwarnings("ignore", message="no learned start is shipped")
        got = curve(lm, refine_recipe(lr or REFINE_LR, k), toks, e_enc, m, None, (k,),
                    batch_size)
    res = sorted(got["results"], key=lambda r: r.index)
    return torch.stack([r.e.float() for r in res]).numpy(), got["by_k"][k]["exact"]


def study(cfg: EncoderRecallConfig, log) -> dict:
    from encoder import checkpoint as ckpt
    from encoder.core import EncoderError
    from encoder.models import encode_tokens

    rows, total, _ = check_inputs(cfg)
    enc, decoder, m, blob = ckpt.load(cfg.checkpoint, device=cfg.device, dtype=cfg.dtype)
    lm = decoder.lm
    q = query_texts(rows, blob, lm, cfg.limit)
    longest = enc.max_tokens
    if longest and max(map(len, q.token_ids)) > longest:
        raise EncoderError(f"a text of {max(map(len, q.token_ids))} tokens is longer than "
                           f"encoder {blob['path']}'s maximum of {longest}")
    n_texts = len(np.unique(rows.text))
    log(f"encoder_recall: {len(rows.text)} solved rows ({total} in the corpus) of {n_texts} "
        f"texts; {len(q.code)} query texts ({q.seen} left out as trained on)")
    e_enc = encode_tokens(enc, q.token_ids, q.texts, batch_size=cfg.batch_size).float().cpu()
    e0, e0_what = reference_e0(lm, enc)
    with enc.decoding():
        exact0 = one_pass_exact(decoder, e_enc, m, q.token_ids)
        exact_e0 = one_pass_exact(decoder, np.tile(e0, (len(q.code), 1)), m, q.token_ids)
    enc.release()  # refinement fits with the plain decoder
    l2, ip = build_indexes(rows.e)
    m_cpu = m.detach().float().cpu()
    results = []
    for k in sorted(set(cfg.ks)):
        t0 = time.time()
        if k == 0:
            e, exact = e_enc.numpy(), exact0
        else:
            e, exact = refined(lm, e_enc, m_cpu, q.token_ids, k, cfg.refine_lr, cfg.batch_size)
        st = rank_stats(e, l2, ip, rows.text, q.code)
        results.append({"start": "encoder", "k": k, "exact": exact, **st})
        log(f"encoder K={k}: recall@1 {st['recall_at_1']:.3f}, median rank "
            f"{st['median_rank']:g}, exact {exact:.2f} ({time.time() - t0:.0f} s)")
    st = rank_stats(np.tile(e0, (len(q.code), 1)), l2, ip, rows.text, q.code)
    results.append({"start": "e0", "k": 0, "exact": exact_e0, "what": e0_what, **st})
    results.append({"start": "chance", "k": None, "exact": None,
                    **chance_stats(rows.text, q.code)})
    return {"model": {"name": lm.name, "precision": lm.precision}, "checkpoint": blob["path"],
            "corpus": str(cfg.corpus), "rows": len(rows.text), "corpus_rows": int(total),
            "texts": int(n_texts), "queries": len(q.code), "seen_left_out": q.seen,
            "ks": sorted(set(cfg.ks)), "e0": e0_what, "results": results, "query_ids": q.ids}


# ---------------------------------------------------------------- views

def _f(v, nd: int = 3) -> str:
    if v is None:
        return "—"
    return f"{v:.{nd}f}" if isinstance(v, float) and not float(v).is_integer() else f"{v:g}"


def label(x: dict) -> str:
    if x["start"] == "encoder":
        return f"encoder, K={x['k']}"
    return "e0 (constant)" if x["start"] == "e0" else "chance"


def table(rep: dict) -> str:
    head = (f"Nearest corpus solutions of {rep['queries']} query texts' e's among "
            f"{rep['rows']} solved rows of {rep['texts']} texts ({rep['corpus']}; encoder "
            f"{rep['checkpoint']}; e0: {rep['e0']})")
    cols = ("e", "recall@1", "recall@5", "median rank", "mean rank", "own / other L2 (median)",
            "cosine recall@1", "cosine median rank", "exact")
    lines = [head, "", "| " + " | ".join(cols) + " |", "|---" * len(cols) + "|"]
    for x in rep["results"]:
        exact = "—" if x["exact"] is None else f"{x['exact']:.2f}"
        lines.append(f"| {label(x)} | {x['recall_at_1']:.3f} | {x['recall_at_5']:.3f} | "
                     f"{_f(x['median_rank'], 1)} | {_f(x['mean_rank'], 1)} | "
                     f"{_f(x['distance_ratio_median'])} | {x['cosine_recall_at_1']:.3f} | "
                     f"{_f(x['cosine_median_rank'], 1)} | {exact} |")
    return "\n".join(lines)


def plot(rep: dict):
    import matplotlib.pyplot as plt  # lazy: only the plot needs it
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    enc = [x for x in rep["results"] if x["start"] == "encoder"]
    ref = {x["start"]: x for x in rep["results"] if x["start"] != "encoder"}
    for f, style in (("recall_at_1", "o-"), ("recall_at_5", "s--")):
        a.plot([x["k"] for x in enc], [x[f] for x in enc], style, label=f"encoder {f}")
    for name, style in (("e0", ":"), ("chance", "-.")):
        a.axhline(ref[name]["recall_at_1"], ls=style, color="grey", label=f"{name} recall_at_1")
    a.set(xlabel="refinement steps K", ylabel="recall", ylim=(0, 1.02),
          title="is the nearest corpus row of its own text?")
    a.legend(fontsize=8)
    n = rep["rows"]
    for x in enc + [ref["e0"]]:
        r = np.concatenate([[1], np.sort(np.asarray(x["rank"]))])
        b.step(r, np.arange(len(r)) / (len(r) - 1), where="post", label=label(x))
    b.set(xscale="log", xlim=(0.9, max(2, n)), xlabel="rank of the first own-text row",
          ylabel="share of queries", title=f"rank among {n} rows", ylim=(0, 1.02))
    b.legend(fontsize=8)
    fig.tight_layout()
    return fig


def summary(rep: dict) -> dict:
    enc = {f"K={x['k']}": x for x in rep["results"] if x["start"] == "encoder"}
    ref = {x["start"]: x for x in rep["results"] if x["start"] != "encoder"}
    return {"checkpoint": rep["checkpoint"], "queries": rep["queries"], "rows": rep["rows"],
            "recall_at_1": {k: round(x["recall_at_1"], 4) for k, x in enc.items()},
            "median_rank": {k: x["median_rank"] for k, x in enc.items()},
            "e0_recall_at_1": round(ref["e0"]["recall_at_1"], 4),
            "chance_recall_at_1": round(ref["chance"]["recall_at_1"], 4)}


def metrics(rep: dict) -> dict:
    out = {}
    for x in rep["results"]:
        key = f"{x['start']}/k{x['k']}" if x["start"] == "encoder" else x["start"]
        for f in ("recall_at_1", "recall_at_5", "median_rank", "mean_rank",
                  "distance_ratio_median", "cosine_recall_at_1", "exact"):
            if x.get(f) is not None:
                out[f"{key}/{f}"] = x[f]
    return out


# ---------------------------------------------------------------- CLI

def _threads(n: int):
    """torch and FAISS threads (eval.locality's), imported only when a study runs."""
    from eval.locality import _threads as both
    return both(n)


def main(argv=None) -> int:
    body = E.table_body("encoder_recall", study, table, plot, summary, metrics, out=out_dir,
                        threads=_threads)

    def errors():
        from data_gen.corpus import CorpusError
        from encoder.core import EncoderError
        return (*E.table_errors(), EncoderError, CorpusError)

    return E.run_command(EncoderRecallConfig, __doc__, argv, "encoder_recall", body,
                         errors=errors, preflight=check_inputs,
                         run_name=lambda cfg: f"encoder_recall-{Path(cfg.corpus).resolve().name}",
                         paths={"corpus": "corpus directory (data_gen.build output)",
                                "checkpoint": "encoder file, training output dir, or 'default'"})


if __name__ == "__main__":
    sys.exit(main())
