"""Check a corpus: every shard against the manifest and its sidecar, then re-decode a sample.

  python -m data_gen.verify outputs/corpus/tiny                 # checksums + 16 re-decoded rows
  python -m data_gen.verify outputs/corpus/tiny sample=0        # checksums only
  python -m data_gen.verify CORPUS device=cpu strict=true       # exit 1 on decode mismatches too

Shard checks (rows and pairs): listed in the manifest but missing, size or sha256 different
from the manifest / sidecar (truncated or corrupt), unreadable parquet, wrong row count, and
present-but-unlisted shards. Any of these -> exit 1. A corpus whose build has not finished
(no manifest, or status partial) is checked against its sidecars and reported as partial.

Re-decoding: a seeded sample of rows is decoded with ONE forward pass (proto.decode.one_pass)
with the recorded model, precision, arrangement and m; recorded and re-measured accuracy are
reported side by side (they can differ slightly on other hardware or thread counts), and so
are the sampled rows recorded as solved and how many of them decode exactly (solved_decoded):
a solved row that does not decode is a corpus error, counted as a mismatch.
A chunked corpus (data_gen.build text_chunk=C: a row per chunk of a text) is sampled by whole
text: `sample` texts with all their rows, decoded the same way, and reported per row and per
whole text (texts_exact: every chunk has a row that decodes exactly; texts_untiled: texts whose
chunks do not tile their tokens, an error like a missing shard).
The last stdout line is JSON; the run is logged to MLflow (experiment `data_gen`, run
`verify`) with the summary's counts as verify/* metrics and the summary as verify.json.
"""
from __future__ import annotations

import dataclasses
import json
import random
import sys
from pathlib import Path

import pyarrow.parquet as pq
import torch

from proto import config as C
from proto.arrangement import Arrangement
from proto.decode import hits, one_pass
from proto.models import ModelLoadError, load_model
from proto.solution import spans_tile
from proto.tracking import run as mlflow_run

from . import corpus as K


def check_files(root: Path) -> dict:
    """Shard problems of a corpus: {'problems': [...], 'checked': n, 'status': ...}."""
    problems: list[dict] = []
    man = None
    if (root / "manifest.json").exists():
        man = K.read_manifest(root)
        status = man.get("status", "?")
    else:
        status = "no manifest"
    checked = 0
    for kind in (K.SHARDS, K.PAIRS):
        # a finished corpus is checked against its manifest; an unfinished one against the
        # sidecars of the shards written so far
        full = man is not None and status == "complete"
        listed = man[kind] if full else K.list_shards(root, kind)
        listed_paths = set()
        for ent in listed:
            i = int(ent["chunk"])
            checked += 1
            state, info = K.check_shard(root, kind, i, deep=True)
            name = ent["path"] or f"{kind}/{K.chunk_name(i)}.json"
            listed_paths.add(name)
            if state == "ok" and ent["path"] is None:
                continue  # an empty shard: sidecar only
            path = root / name
            if state == "absent":
                problems.append({"shard": name, "problem": "missing" if not path.exists()
                                 else "sidecar missing"})
                continue
            if state == "corrupt":
                kind_p = "missing" if not path.exists() else "corrupt"
                problems.append({"shard": name, "problem": kind_p, "why": info["why"]})
                continue
            if full and (info["sha256"] != ent["sha256"] or info["rows"] != ent["rows"]):
                problems.append({"shard": name, "problem": "corrupt",
                                 "why": "sidecar differs from the manifest"})
        for p in sorted((root / kind).glob("chunk-*.parquet")):
            rel = f"{kind}/{p.name}"
            if rel not in listed_paths:
                st, info = K.check_shard(root, kind, int(p.stem.split("-")[1]), deep=True)
                problems.append({"shard": rel, "problem": "unlisted" if st == "ok" else
                                 ("undescribed" if st == "absent" else "corrupt"),
                                 **({"why": info["why"]} if st == "corrupt" else {})})
    if man and man.get("m") and not (root / man["m"]).exists():
        problems.append({"shard": man["m"], "problem": "missing"})
    return {"problems": problems, "checked": checked, "status": status, "manifest": man}


ROW_COLUMNS = ["text_id", "restart", "token_ids", "e", "accuracy", "solved"]
TEXT_KEYS = ("texts_sampled", "texts_exact", "texts_recorded_solved", "texts_solved_decoded",
             "texts_untiled")


def sample_rows(rows: list[dict], sample: int, seed: int, chunked: bool) -> list[dict]:
    """`sample` seeded rows; of a chunked corpus every row of `sample` whole texts, so that
    each sampled text can be judged whole."""
    rng = random.Random(seed)
    if not chunked:
        return rng.sample(rows, min(sample, len(rows)))
    parents = sorted({r["parent_id"] for r in rows})
    pick = set(rng.sample(parents, min(sample, len(parents))))
    return [r for r in rows if r["parent_id"] in pick]


def tiled(chunks: dict[int, dict]) -> bool:
    """Do a text's chunks (one decoded row each, by chunk index) cover its tokens in order?"""
    rows = [chunks[k] for k in sorted(chunks)]
    return (sorted(chunks) == list(range(len(rows)))
            and spans_tile([r["span"] for r in rows], [r["n_tokens"] for r in rows],
                           rows[0]["parent_n_tokens"]))


def whole_texts(out: list[dict]) -> dict:
    """Per whole text of decoded chunk rows: exact when every chunk has a row (restart) that
    decodes exactly and the chunks tile the text; recorded solved when every chunk has a
    solved row."""
    by: dict[str, dict[int, list[dict]]] = {}
    for o in out:
        by.setdefault(o["parent_id"], {}).setdefault(o["chunk"], []).append(o)
    res = dict.fromkeys(TEXT_KEYS, 0) | {"texts_sampled": len(by)}
    for chunks in by.values():
        ok = tiled({k: rs[0] for k, rs in chunks.items()})
        claimed = all(any(o["solved"] for o in rs) for rs in chunks.values())
        decoded = ok and all(any(o["measured"] >= 1 - 1e-9 for o in rs)
                             for rs in chunks.values())
        res["texts_untiled"] += not ok
        res["texts_exact"] += decoded
        res["texts_recorded_solved"] += claimed
        res["texts_solved_decoded"] += claimed and decoded
    return res


def decode_rows(lm, arr, m, rows: list[dict]) -> list[dict]:
    """Recorded and measured accuracy of each row, one forward pass per token length."""
    out = []
    by_len: dict[int, list[dict]] = {}
    for r in rows:
        by_len.setdefault(len(r["token_ids"]), []).append(r)
    for n, rs in sorted(by_len.items()):
        e = torch.tensor([r["e"] for r in rs])
        tgt = torch.tensor([r["token_ids"] for r in rs], device=lm.device)
        pred = one_pass(lm, arr, e, None if m is None else m.expand(len(rs), -1), n,
                        targets=tgt if arr.autoregressive else None)
        acc, _ = hits(pred, tgt)
        for r, a in zip(rs, acc):
            out.append({"text_id": r["text_id"], "restart": r["restart"],
                        "recorded": r["accuracy"], "measured": a, "solved": bool(r["solved"]),
                        "n_tokens": n, **{k: r[k] for k, _ in K.CHUNK_FIELDS if k in r}})
    return out


def redecode(root: Path, man: dict | None, sample: int, seed: int, device: str,
             bad: set[str]) -> dict:
    """Re-decode `sample` rows (whole texts, if chunked) with one_pass; recorded vs measured
    accuracy."""

    info = man or json.loads((root / "build.json").read_text())
    complete = man is not None and man.get("status") == "complete"
    files = [root / s["path"] for s in (man[K.SHARDS] if complete else K.list_shards(root))
             if s.get("path") and s["path"] not in bad and (root / s["path"]).exists()]
    if not files or sample <= 0:
        return {"sampled": 0}
    chunked = "parent_id" in pq.read_schema(files[0]).names
    cols = ROW_COLUMNS + ([n for n, _ in K.CHUNK_FIELDS] if chunked else [])
    rows = [r for f in files for r in pq.read_table(f, columns=cols).to_pylist()]
    pick = sample_rows(rows, sample, seed, chunked)
    lm = load_model(info["model"]["name"], device=device or None, dtype="auto",
                    record=info.get("precision"), what=f"corpus {root}", verbose=False)
    warning = None
    if lm.weights_sha256 != info["model"]["weights_sha256"]:
        warning = (f"model weights differ from the recorded ones "
                   f"({lm.weights_sha256[:12]} vs {info['model']['weights_sha256'][:12]})")
    arr = Arrangement.from_dict(info["arrangement"])
    out = decode_rows(lm, arr, K.load_m(root)[0] if arr.uses_m else None, pick)
    diffs = [abs(o["recorded"] - o["measured"]) for o in out]
    solved = [o for o in out if o["solved"]]
    res = {"sampled": len(out), "recorded_mean": sum(o["recorded"] for o in out) / len(out),
           "measured_mean": sum(o["measured"] for o in out) / len(out),
           "max_abs_diff": max(diffs), "mismatches": sum(d > 1e-6 for d in diffs),
           # a row counts as solved only if it decodes: the corpus's claim, checked
           "recorded_solved": len(solved),
           "solved_decoded": sum(o["measured"] >= 1 - 1e-9 for o in solved),
           **(whole_texts(out) if chunked else {}), "rows": out}
    if warning:
        res["warning"] = warning
    return res


@dataclasses.dataclass
class VerifyConfig:
    corpus: str = ""                 # corpus directory
    sample: int = 16                 # rows to re-decode (0: none); chunked: whole texts
    seed: int = 0
    device: str = ""
    strict: bool = False             # exit 1 on decode mismatches too
    mlflow: bool = True

    def __post_init__(self):
        if not self.corpus:
            raise ValueError("no corpus given: python -m data_gen.verify DIR")
        if self.sample < 0:
            raise ValueError("sample must be >= 0")


def log_run(a: VerifyConfig, summary: dict) -> None:
    """The verification as an MLflow run, like every command's: what was checked, what failed."""
    dec = summary["decode"]
    with mlflow_run("data_gen", a, run_name="verify", enabled=a.mlflow) as mr:
        mr.tags({"stage": "data_gen-verify", "corpus": summary["corpus"],
                 "status": summary["status"]})
        mr.metrics({"verify/ok": summary["ok"], "verify/shards_checked": summary["shards_checked"],
                    "verify/problems": len(summary["problems"]),
                    "verify/corrupt": summary["corrupt"], "verify/missing": summary["missing"],
                    **{f"verify/{k}": dec[k] for k in ("sampled", "recorded_mean",
                                                       "measured_mean", "max_abs_diff",
                                                       "mismatches", "recorded_solved",
                                                       "solved_decoded", *TEXT_KEYS)
                       if k in dec}})
        mr.dict(summary, "verify.json")


def main(argv=None) -> int:
    a = C.parse_cli(VerifyConfig, __doc__, argv, prog="python -m data_gen.verify",
                    positional={"corpus": "corpus directory"})
    if a is None:
        return 2
    root = Path(a.corpus)
    if not root.is_dir() or not ((root / "manifest.json").exists()
                                 or (root / "build.json").exists()):
        print(f"error: {root} is not a corpus directory (no manifest.json or build.json): "
              f"build it with {K.build_command(root)}", file=sys.stderr)
        return 2
    try:
        files = check_files(root)
    except K.CorpusError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for pr in files["problems"]:
        print(f"{pr['problem']}: {pr['shard']}" + (f" ({pr['why']})" if "why" in pr else ""),
              file=sys.stderr)
    bad = {pr["shard"] for pr in files["problems"]}
    try:
        dec = redecode(root, files["manifest"], a.sample, a.seed, a.device, bad)
    except (ModelLoadError, K.CorpusError, OSError, ValueError, KeyError) as exc:
        dec = {"sampled": 0, "error": str(exc).splitlines()[0] if str(exc) else repr(exc)}
    if dec.get("sampled"):
        print(f"re-decoded {dec['sampled']} rows: recorded accuracy {dec['recorded_mean']:.4f}, "
              f"measured {dec['measured_mean']:.4f}, max |diff| {dec['max_abs_diff']:.4g}, "
              f"{dec['mismatches']} mismatching", file=sys.stderr)
    if dec.get("texts_sampled"):
        print(f"re-decoded {dec['texts_sampled']} whole texts: {dec['texts_exact']} exact (every "
              f"chunk), {dec['texts_solved_decoded']} of {dec['texts_recorded_solved']} recorded "
              f"solved decode, {dec['texts_untiled']} not tiled by their chunks", file=sys.stderr)
    if "warning" in dec:
        print(f"warning: {dec['warning']}", file=sys.stderr)
    ok = (not files["problems"] and "error" not in dec and not dec.get("texts_untiled")
          and not (a.strict and dec.get("mismatches")))
    summary = {"corpus": str(root), "ok": ok, "status": files["status"],
               "shards_checked": files["checked"], "problems": files["problems"],
               "corrupt": sum(p["problem"] == "corrupt" for p in files["problems"]),
               "missing": sum(p["problem"] == "missing" for p in files["problems"]),
               "decode": {k: v for k, v in dec.items() if k != "rows"}}
    log_run(a, summary)
    C.print_summary(summary)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
