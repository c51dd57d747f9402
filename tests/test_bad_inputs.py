"""The bad-input battery: every entry point against bad input, from one table.

Each case runs one command (in-process through its `main(argv)`, a few as real subprocesses so
that what reaches a terminal is seen) in a directory of its own, and checks the contract of
README's "Commands": exactly one line on stderr, starting with `error:` and holding the case's
fragment (the line is about this input), exit code 2, no traceback, no bare exception name in
place of a reason, and no file or directory created, changed or removed, inputs included. The
inputs are made in the case's directory: missing, empty and random-byte files, and copies of
real tiny artefacts (a solution file, a corpus, an encoder) built once per test run on the
in-process model `tiny-random`, whole, cut in half or edited.

PROTOSPACE_BAD_INPUTS_TABLE=FILE writes the page of the table (entry point, bad input, the
error line) to FILE after a run of every case: docs/research/house/bad-inputs.md.
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import os
import random
import re
import shlex
import shutil
import subprocess
import sys
import time
import traceback
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PY = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv").exists() else sys.executable
TABLE_ENV = "PROTOSPACE_BAD_INPUTS_TABLE"
# tiny-random's context is 512 positions and its tokenizer is byte-level: 1000 bytes is too long
LONG_TEXT = "a long text " * 84


MODULES = {"proto.fit": "proto.fit.__main__", "proto.decode": "proto.decode.__main__"}


@dataclasses.dataclass
class Case:
    entry: str                  # the command, python -m ENTRY
    bad: str                    # the bad input, in words (a row of the table)
    argv: str                   # shell words; {name} is an input made by INPUTS[name]
    expect: str = ""            # a fragment the error line must hold
    subprocess: bool = False    # run as `python -m` to see what reaches the terminal
    front: bool = False         # a case of the command front that every entry point shares
    xfail: str = ""             # a known failure, strict: the reason names where it is fixed

    @property
    def id(self) -> str:
        return f"{self.entry}: {self.bad}"


# ------------------------------------------------------------------ the inputs

def _random_bytes(path: Path, n: int = 4096) -> Path:
    path.write_bytes(random.Random(path.name).randbytes(n))
    return path


def _half(src: Path, dst: Path) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: len(data) // 2])
    return dst


def _copy(src: Path, dst: Path) -> Path:
    if src.is_dir():
        shutil.copytree(src, dst)
    else:
        shutil.copyfile(src, dst)
    return dst


def _text_file(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _corpus_with(tmp: Path, art: dict, name: str, change) -> Path:
    root = _copy(art["corpus"], tmp / name)
    change(root)
    return root


def _first_shard(root: Path) -> Path:
    return sorted((root / "shards").glob("*.parquet"))[0]


def _edit_manifest(root: Path, edit) -> None:
    p = root / "manifest.json"
    man = json.loads(p.read_text())
    edit(man)
    p.write_text(json.dumps(man))


def _other_m(root: Path) -> None:
    from data_gen import corpus as K
    m, meta = K.load_m(root)
    K.save_m(root, m + 1.0, meta)


def _encoder_without_m(tmp: Path, art: dict) -> Path:
    """The tiny encoder as one trained for an arrangement without m ([e] x N) would be."""
    import torch
    blob = torch.load(art["encoder"], map_location="cpu", weights_only=True)
    blob["state"].pop("m", None)
    blob["arrangement"] = {**blob["arrangement"], "name": "eN"}
    path = tmp / "encoder-no-m.pt"
    torch.save(blob, path)
    return path


def _long_solution(tmp: Path, art: dict) -> Path:
    """The tiny solution file with a row of 600 tokens, more than tiny-random's context."""
    from proto import solution
    e, m, meta = solution.load(art["sol"])
    meta.pop("format")
    meta["rows"][0]["token_ids"] = [5] * 600
    path = tmp / "long.safetensors"
    solution.save(path, e, m, meta)
    return path


INPUTS = {
    "root": lambda tmp, art: ROOT,
    "tmp": lambda tmp, art: tmp,
    "missing": lambda tmp, art: tmp / "no-such-file",
    "empty": lambda tmp, art: _text_file(tmp / "empty.txt", ""),
    "blank": lambda tmp, art: _text_file(tmp / "blank.txt", "\n  \n\n"),
    "garbage": lambda tmp, art: _random_bytes(tmp / "garbage.bin"),
    "garbage_txt": lambda tmp, art: _random_bytes(tmp / "garbage.txt"),
    "empty_dir": lambda tmp, art: (tmp / "empty-dir").mkdir() or tmp / "empty-dir",
    "file": lambda tmp, art: _text_file(tmp / "a-file", "x\n"),
    "long_texts": lambda tmp, art: _text_file(tmp / "long.txt", LONG_TEXT + "\n"),
    "yaml_list": lambda tmp, art: _text_file(tmp / "list.yaml", "- a\n- b\n"),
    "sol": lambda tmp, art: _copy(art["sol"], tmp / "sol.safetensors"),
    "sol_half": lambda tmp, art: _half(art["sol"], tmp / "half.safetensors"),
    "sol_long": _long_solution,
    "start_half": lambda tmp, art: _half(ROOT / "proto" / "starts" / "smollm2-135m.pt",
                                         tmp / "start-half.pt"),
    "corpus": lambda tmp, art: _copy(art["corpus"], tmp / "corpus"),
    "corpus_garbage": lambda tmp, art: _corpus_with(
        tmp, art, "corpus-garbage",
        lambda r: _random_bytes(r / "manifest.json")),
    "corpus_half_manifest": lambda tmp, art: _corpus_with(
        tmp, art, "corpus-half-manifest",
        lambda r: _half(r / "manifest.json", r / "manifest.json")),
    # build.json: what a rerun of the build resumes from (the manifest it rewrites itself)
    "corpus_garbage_build": lambda tmp, art: _corpus_with(
        tmp, art, "corpus-garbage-build", lambda r: _random_bytes(r / "build.json")),
    "corpus_half_build": lambda tmp, art: _corpus_with(
        tmp, art, "corpus-half-build", lambda r: _half(r / "build.json", r / "build.json")),
    "corpus_half_shard": lambda tmp, art: _corpus_with(
        tmp, art, "corpus-half-shard", lambda r: _half(_first_shard(r), _first_shard(r))),
    "corpus_garbage_shard": lambda tmp, art: _corpus_with(
        tmp, art, "corpus-garbage-shard", lambda r: _random_bytes(_first_shard(r))),
    # an interrupted build: shards and build.json written, no manifest yet
    "corpus_partial": lambda tmp, art: _corpus_with(
        tmp, art, "corpus-partial", lambda r: (r / "manifest.json").unlink()),
    # a manifest of an older format: its recipe holds a field the Recipe no longer has
    "corpus_old_recipe": lambda tmp, art: _corpus_with(
        tmp, art, "corpus-old-recipe",
        lambda r: _edit_manifest(r, lambda man: man["recipe"].update(retired_field=1))),
    # corpora built with other settings: another shared m, another model's weights
    "corpus_other_m": lambda tmp, art: _corpus_with(tmp, art, "corpus-other-m", _other_m),
    "corpus_other_model": lambda tmp, art: _corpus_with(
        tmp, art, "corpus-other-model",
        lambda r: _edit_manifest(r, lambda man: man["model"].update(weights_sha256="0" * 64))),
    "encoder": lambda tmp, art: _copy(art["encoder"], tmp / "encoder.pt"),
    "encoder_half": lambda tmp, art: _half(art["encoder"], tmp / "encoder-half.pt"),
    "encoder_no_m": _encoder_without_m,
    "encoder_run": lambda tmp, art: _copy(art["encoder"].parent, tmp / "encoder-run"),
    # an interrupted training run: its checkpoint directory, nothing else
    "encoder_run_partial": lambda tmp, art: _copy(art["encoder"].parent / "ckpt",
                                                  tmp / "encoder-partial" / "ckpt").parents[0],
}


class Inputs(dict):
    """The inputs of one case by name, each made in the case's directory on first use."""

    def __init__(self, tmp: Path, art: dict):
        super().__init__()
        self.tmp, self.art = tmp, art

    def __missing__(self, key):
        self[key] = value = str(INPUTS[key](self.tmp, self.art))
        return value


# ------------------------------------------------------------------ the table

# what every entry point takes when nothing is wrong (tiny model, no MLflow, outputs in {tmp})
BASE = {
    "proto.fit": "--model tiny-random --text hello max_steps=2 mlflow=false "
                 "--out {tmp}/out.safetensors",
    "proto.decode": "{sol} mlflow=false",
    "proto.meta": "model=tiny-random n_tokens=4 iters=1 inner_steps=1 texts_per_source=1 "
                  "mlflow=false out={tmp}/start.pt",
    "data_gen.build": "--config {root}/configs/data_gen/tiny.yaml out={tmp}/out-corpus "
                      "threads=1 mlflow=false",
    "data_gen.verify": "{corpus}",
    "encoder.train": "--config {root}/configs/encoder/tiny.yaml out={tmp}/run "
                     "data.corpus={corpus} train.steps=1 threads=1 mlflow=false",
    "encoder.evaluate": "--checkpoint {encoder} --corpus {corpus} out={tmp}/evaluate "
                        "mlflow=false",
    "encoder.encode": "--checkpoint {encoder} --text hello --out {tmp}/out.safetensors "
                      "mlflow=false",
    "eval.bench_fit": "model=tiny-random n_texts=1 n_tokens=4 cap=2 paper_texts=1 "
                      "profile_batch=1 scaling_batches=[1] mlflow=false",
    "eval.bench_tail": "model=tiny-random n_texts=1 n_tokens=4 batch_size=1 cap=2 "
                       "out={tmp}/tail mlflow=false",
    "eval.bench_corpus": "build_config={root}/configs/data_gen/tiny.yaml out={tmp}/bc "
                         "mlflow=false",
    "eval.bench_encoder": "encoder_config={root}/configs/encoder/tiny.yaml n_tokens=4 "
                          "micro_batch=1 reps=1 mlflow=false",
    "eval.throughput": "model=tiny-random lengths=[4] reps=1 fit_texts=1 fit_length=4 "
                       "mlflow=false",
    "eval.locality": "--corpus {corpus} out={tmp}/locality semantic=false mlflow=false",
    "eval.connectivity": "--corpus {corpus} out={tmp}/connectivity mlflow=false",
    "eval.encoder_recall": "--corpus {corpus} --checkpoint {encoder} out={tmp}/recall ks=[0] "
                           "threads=1 mlflow=false",
    "eval.arrangements": "model=tiny-random arrangements=[e_m] lengths=[2] n_texts=1 "
                         "max_steps=2 out={tmp}/arr mlflow=false",
    "eval.sharing": "model=tiny-random n_tokens=4 n_texts=1 group_sizes=[1] seeds=1 "
                    "max_steps=2 out={tmp}/sharing mlflow=false",
    "eval.capacity": "model=tiny-random lengths=[2] n_texts=1 max_steps=2 out={tmp}/cap "
                     "mlflow=false",
    "eval.recipes": "model=tiny-random lengths=[4] n_texts=1 candidates=[paper] max_steps=2 "
                    "out={tmp}/recipes mlflow=false",
}

# an out-of-range value of each entry point
OUT_OF_RANGE = {
    "proto.fit": "restarts=0", "proto.decode": "dtype=float7", "proto.meta": "eps=2",
    "data_gen.build": "restart_fraction=2", "data_gen.verify": "sample=-1",
    "encoder.train": "train.steps=0", "encoder.evaluate": "limit=-1",
    "encoder.encode": "refine_steps=-1", "eval.bench_fit": "n_texts=0",
    "eval.bench_tail": "cap=0", "eval.bench_corpus": "arms=[]",
    "eval.bench_encoder": "reps=0", "eval.throughput": "reps=0", "eval.locality": "k=0",
    "eval.connectivity": "compute=-1", "eval.encoder_recall": "ks=[-1]",
    "eval.arrangements": "n_texts=0",
    "eval.sharing": "seeds=0", "eval.capacity": "threshold=2", "eval.recipes": "n_texts=0",
}


def _config_cases() -> list[Case]:
    """What every command front must refuse: config files and keys."""
    out = []
    for entry, base in BASE.items():
        out += [
            Case(entry, "missing config file", f"{base} --config {{missing}}", "not found"),
            Case(entry, "garbage config file", f"{base} --config {{garbage}}", "config"),
            Case(entry, "config not a mapping", f"{base} --config {{yaml_list}}", "mapping"),
            Case(entry, "unknown key", f"{base} no_such_key=1", "no_such_key"),
            Case(entry, "unknown flag", f"{base} --no-such-flag", "--no-such-flag"),
            Case(entry, "out-of-range value", f"{base} {OUT_OF_RANGE[entry]}"),
        ]
    return [dataclasses.replace(c, front=True) for c in out]


def _texts_file_cases(entry: str, cmd: str, too_long: str = "context",
                      whole: str = "") -> list[Case]:
    """Missing, empty and too-long texts files for a command that takes --texts-file; `whole`
    is what makes a command that chunks by default read each text as one."""
    return [
        Case(entry, "missing texts file", f"{cmd} --texts-file {{missing}}", "no-such-file"),
        Case(entry, "empty texts file", f"{cmd} --texts-file {{empty}}", "holds no text"),
        Case(entry, "text too long", f"{cmd} --texts-file {{long_texts}} {whole}".rstrip(),
             too_long),
    ]


def _checkpoint_cases(entry: str, ck: str) -> list[Case]:
    """Missing, empty, garbage and truncated encoder files; `ck` has %s for the file's key."""
    return [
        Case(entry, "missing checkpoint", ck % "missing", "not found"),
        Case(entry, "empty checkpoint", ck % "empty", "empty.txt"),
        Case(entry, "garbage checkpoint", ck % "garbage", "garbage.bin"),
        Case(entry, "truncated checkpoint", ck % "encoder_half", "encoder-half.pt"),
    ]


def _fit_cases() -> list[Case]:
    b = BASE["proto.fit"].replace("--text hello ", "")
    return _texts_file_cases("proto.fit", b, too_long="512") + [
        Case("proto.fit", "blank texts file", f"{b} --texts-file {{blank}}", "holds no text"),
        Case("proto.fit", "garbage texts file", f"{b} --texts-file {{garbage}}", "UTF-8"),
        Case("proto.fit", "out is a directory", f"{b} --text hi --out {{empty_dir}}",
             "is a directory"),
        Case("proto.fit", "missing encoder (init_from)", f"{b} --text hi --init-from {{missing}}",
             "not found"),
        Case("proto.fit", "garbage encoder (init_from)", f"{b} --text hi --init-from {{garbage}}",
             "garbage.bin"),
        Case("proto.fit", "truncated encoder (init_from)",
             f"{b} --text hi --init-from {{encoder_half}}", "encoder-half.pt"),
        Case("proto.fit", "encoder without m (init_from)",
             f"{b} --text hi --init-from {{encoder_no_m}}", "no m"),
        Case("proto.fit", "unknown recipe", f"{b} --text hi --recipe nope", "nope"),
        Case("proto.fit", "unknown model", "--model no-such-model --text hi mlflow=false "
                                           "--out {tmp}/o.safetensors", "no-such-model"),
    ]


def _decode_cases() -> list[Case]:
    return [
        Case("proto.decode", "no solution file", "mlflow=false", "no solution file given"),
        Case("proto.decode", "missing solution file", "{missing} mlflow=false", "not found"),
        Case("proto.decode", "empty solution file", "{empty} mlflow=false", "empty.txt"),
        Case("proto.decode", "garbage solution file", "{garbage} mlflow=false",
             subprocess=True, expect="garbage.bin"),
        Case("proto.decode", "truncated solution file", "{sol_half} mlflow=false",
             "half.safetensors"),
        Case("proto.decode", "solution file is a directory", "{empty_dir} mlflow=false",
             "empty-dir"),
        Case("proto.decode", "text too long for the decoder", "{sol_long} mlflow=false", "context"),
    ]


def _meta_cases() -> list[Case]:
    b = BASE["proto.meta"]
    return [
        Case("proto.meta", "missing start (init)", f"{b} init={{missing}}", "not found"),
        Case("proto.meta", "empty start (init)", f"{b} init={{empty}}", "empty"),
        Case("proto.meta", "garbage start (init)", f"{b} init={{garbage}}", "garbage.bin"),
        Case("proto.meta", "truncated start (init)", f"{b} init={{start_half}}", "start-half.pt"),
        Case("proto.meta", "texts too long", f"{b} n_tokens=600", "context"),
        Case("proto.meta", "out is a directory", f"{b} out={{empty_dir}}", "is a directory"),
    ]


def _build_cases() -> list[Case]:
    b = BASE["data_gen.build"]
    files = "sources=[{{name: files, paths: [{%s}], lengths: [4]}}]"
    return [
        Case("data_gen.build", "missing texts file (files source)", f"{b} '{files % 'missing'}'",
             "no-such-file"),
        Case("data_gen.build", "empty texts file (files source)", f"{b} '{files % 'empty'}'",
             "no non-empty texts"),
        Case("data_gen.build", "garbage texts file (files source)",
             f"{b} '{files % 'garbage_txt'}'", "UTF-8"),
        Case("data_gen.build", "texts too long",
             f"{b} 'sources=[{{{{name: random-words, count: 1, lengths: [600]}}}}]'", "context"),
        Case("data_gen.build", "garbage encoder (init_from)", f"{b} init_from={{garbage}}",
             "garbage.bin"),
        Case("data_gen.build", "truncated encoder (init_from)", f"{b} init_from={{encoder_half}}",
             "encoder-half.pt"),
        Case("data_gen.build", "corpus built with other settings", f"{b} out={{corpus}} seed=1",
             subprocess=True, expect="different model/config"),
        Case("data_gen.build", "out holds an interrupted build with other settings",
             f"{b} out={{corpus_partial}} seed=1", "different model/config"),
        Case("data_gen.build", "out holds a garbage build.json",
             f"{b} out={{corpus_garbage_build}}", "build.json"),
        Case("data_gen.build", "out holds a truncated build.json",
             f"{b} out={{corpus_half_build}}", "build.json"),
        Case("data_gen.build", "out is a file", f"{b} out={{file}}", "not a directory"),
    ]


def _verify_cases() -> list[Case]:
    return [
        Case("data_gen.verify", "no corpus", "", "no corpus given"),
        Case("data_gen.verify", "missing corpus", "{missing}", "not a corpus"),
        Case("data_gen.verify", "empty directory", "{empty_dir}", "not a corpus"),
        Case("data_gen.verify", "corpus is a file", "{file}", "not a corpus"),
        Case("data_gen.verify", "garbage manifest", "{corpus_garbage}", "manifest.json"),
        Case("data_gen.verify", "truncated manifest", "{corpus_half_manifest}", "manifest.json"),
    ]


def _train_cases() -> list[Case]:
    b = BASE["encoder.train"]
    nc = b.replace("data.corpus={corpus}", "data.corpus={%s}")
    return [
        Case("encoder.train", "missing corpus", nc % "missing", "no-such-file"),
        Case("encoder.train", "empty corpus directory", nc % "empty_dir", "no manifest.json"),
        Case("encoder.train", "garbage corpus manifest", nc % "corpus_garbage", "manifest.json"),
        Case("encoder.train", "truncated corpus manifest", nc % "corpus_half_manifest",
             "manifest.json"),
        Case("encoder.train", "truncated corpus shard", nc % "corpus_half_shard", "unreadable"),
        Case("encoder.train", "garbage corpus shard", nc % "corpus_garbage_shard", "unreadable"),
        Case("encoder.train", "unfinished corpus", nc % "corpus_partial", "no manifest.json"),
        Case("encoder.train", "corpus built with another model", nc % "corpus_other_model",
             "made with model"),
        Case("encoder.train", "extra corpus with another m",
             f"{b} data.extra_corpora=[{{corpus_other_m}}]", "another arrangement or m"),
        Case("encoder.train", "texts too long", f"{b} data.lengths=[600]", "context"),
        Case("encoder.train", "missing encoder (init_from)", f"{b} init_from={{missing}}",
             "not found"),
        Case("encoder.train", "garbage encoder (init_from)", f"{b} init_from={{garbage}}",
             "garbage.bin"),
        Case("encoder.train", "truncated encoder (init_from)", f"{b} init_from={{encoder_half}}",
             "encoder-half.pt"),
        Case("encoder.train", "missing deepspeed config", f"{b} train.deepspeed={{missing}}",
             "DeepSpeed config"),
        Case("encoder.train", "garbage deepspeed config", f"{b} train.deepspeed={{garbage}}",
             "DeepSpeed config"),
        Case("encoder.train", "out holds a run with other settings",
             b.replace("out={tmp}/run", "out={encoder_run}") + " train.lr=0.5", "another config"),
        Case("encoder.train", "out holds an interrupted run",
             b.replace("out={tmp}/run", "out={encoder_run_partial}"), "not an encoder run"),
    ]


def _evaluate_cases() -> list[Case]:
    b = BASE["encoder.evaluate"]
    ck = b.replace("{encoder}", "{%s}")
    co = b.replace("--corpus {corpus}", "--corpus {%s}")
    return _checkpoint_cases("encoder.evaluate", ck) + _texts_file_cases(
            "encoder.evaluate", f"{b} texts=file") + [
        Case("encoder.evaluate", "missing corpus", co % "missing", "no-such-file"),
        Case("encoder.evaluate", "empty corpus directory", co % "empty_dir", "no manifest.json"),
        Case("encoder.evaluate", "garbage corpus manifest", co % "corpus_garbage", "manifest.json"),
        Case("encoder.evaluate", "truncated corpus shard", co % "corpus_half_shard",
             subprocess=True, expect="unreadable"),
        Case("encoder.evaluate", "unfinished corpus", co % "corpus_partial", "no manifest.json"),
        Case("encoder.evaluate", "corpus built with another model", co % "corpus_other_model",
             "made with model"),
        Case("encoder.evaluate", "corpus with another m (texts=all)",
             co % "corpus_other_m" + " texts=all", "another m"),
        Case("encoder.evaluate", "stream texts too long",
             f"{b} texts=stream lengths=[600] stream_kinds=[prose]", "context"),
        Case("encoder.evaluate", "corpus manifest of an older recipe (refine)",
             co % "corpus_old_recipe" + " refine=true refine_texts=1 refine_max_steps=1",
             "retired_field"),
        Case("encoder.evaluate", "out is a file", b.replace("out={tmp}/evaluate", "out={file}"),
             "not a directory"),
    ]


def _encode_cases() -> list[Case]:
    b = BASE["encoder.encode"]
    ck = b.replace("{encoder}", "{%s}")
    nt = b.replace("--text hello ", "")
    # a text past the decoder's context is refused as one e; chunked (the default) it is fine
    return _checkpoint_cases("encoder.encode", ck) + _texts_file_cases(
            "encoder.encode", nt, whole="chunk=0") + [
        Case("encoder.encode", "refinement of an encoder without m",
             ck % "encoder_no_m" + " refine_steps=1", "without m"),
        Case("encoder.encode", "out is a directory",
             b.replace("--out {tmp}/out.safetensors", "--out {empty_dir}"), "is a directory"),
    ]


def _eval_cases() -> list[Case]:
    out = []
    for entry in ("eval.locality", "eval.connectivity"):
        co = BASE[entry].replace("--corpus {corpus}", "--corpus {%s}")
        out += [
            Case(entry, "missing corpus", co % "missing", "does not exist"),
            Case(entry, "empty corpus directory", co % "empty_dir", "no manifest.json"),
            Case(entry, "garbage corpus manifest", co % "corpus_garbage", "manifest.json",
                 subprocess=entry == "eval.locality"),
            Case(entry, "truncated corpus manifest", co % "corpus_half_manifest", "manifest.json"),
            Case(entry, "truncated corpus shard", co % "corpus_half_shard", "unreadable"),
            Case(entry, "unfinished corpus", co % "corpus_partial", "did not finish"),
        ]
    rc = BASE["eval.encoder_recall"].replace("--corpus {corpus}", "--corpus {%s}")
    rk = BASE["eval.encoder_recall"].replace("{encoder}", "{%s}")
    out += [
        Case("eval.encoder_recall", "missing corpus", rc % "missing", "does not exist"),
        Case("eval.encoder_recall", "unfinished corpus", rc % "corpus_partial", "did not finish"),
        Case("eval.encoder_recall", "corpus with another m", rc % "corpus_other_m", "another m"),
        Case("eval.encoder_recall", "corpus of another model", rc % "corpus_other_model",
             "was made with"),
        Case("eval.encoder_recall", "encoder without m", rk % "encoder_no_m", "no m"),
        Case("eval.encoder_recall", "out is a file",
             BASE["eval.encoder_recall"].replace("out={tmp}/recall", "out={file}"),
             "not a directory"),
    ] + _checkpoint_cases("eval.encoder_recall", rk)
    too_long = {"eval.bench_fit": "n_tokens=600", "eval.bench_tail": "n_tokens=600",
                "eval.throughput": "lengths=[600]", "eval.arrangements": "lengths=[600]",
                "eval.sharing": "n_tokens=600", "eval.capacity": "lengths=[600]",
                "eval.recipes": "lengths=[600]", "eval.bench_encoder": "n_tokens=600"}
    out += [Case(e, "texts too long", f"{BASE[e]} {v}", "context") for e, v in too_long.items()]
    for entry in ("eval.arrangements", "eval.sharing", "eval.capacity", "eval.bench_tail",
                  "eval.bench_corpus"):
        out.append(Case(entry, "out is a file",
                        BASE[entry].split(" out=")[0] + " out={file} mlflow=false",
                        "not a directory"))
    tb, rb = BASE["eval.bench_tail"], BASE["eval.recipes"]
    bc = BASE["eval.bench_corpus"].replace("{root}/configs/data_gen/tiny.yaml", "{%s}")
    be = BASE["eval.bench_encoder"].replace("{root}/configs/encoder/tiny.yaml", "{%s}")
    out += [
        Case("eval.bench_tail", "missing texts file", f"{tb} texts_file={{missing}}",
             "no-such-file"),
        Case("eval.bench_tail", "empty texts file", f"{tb} texts_file={{empty}}", "holds no text"),
        Case("eval.bench_tail", "garbage encoder (init_from)", f"{tb} init_from={{garbage}}",
             "garbage.bin"),
        Case("eval.bench_corpus", "missing build config", bc % "missing", "not found"),
        Case("eval.bench_corpus", "garbage build config", bc % "garbage", "garbage.bin"),
        Case("eval.bench_encoder", "missing encoder config", be % "missing", "not found"),
        Case("eval.recipes", "missing texts json", f"{rb} texts_json={{missing}}", "not found"),
        Case("eval.recipes", "garbage texts json", f"{rb} texts_json={{garbage}}", "garbage.bin"),
    ]
    return out


CASES = (_config_cases() + _fit_cases() + _decode_cases() + _meta_cases() + _build_cases()
         + _verify_cases() + _train_cases() + _evaluate_cases() + _encode_cases()
         + _eval_cases())


# ------------------------------------------------------------------ running a case

def snapshot(root: Path) -> dict[str, tuple]:
    """Every path under root: its content hash ('dir' for a directory) and mtime."""
    out = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        digest = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        out[str(p.relative_to(root))] = (digest, st.st_mtime_ns)
    return out


def changes(before: dict, after: dict) -> list[str]:
    return ([f"new {k}" for k in sorted(set(after) - set(before))]
            + [f"removed {k}" for k in sorted(set(before) - set(after))]
            + [f"changed {k}" for k in sorted(set(before) & set(after))
               if before[k] != after[k]])


def run_in_process(entry: str, argv: list[str], capsys) -> tuple[int, str]:
    main = importlib.import_module(MODULES.get(entry, entry)).main
    capsys.readouterr()
    with warnings.catch_warnings(record=True) as caught:
        terminal_warning_filters()
        try:
            rc = main(argv)
        except SystemExit as exc:
            rc = exc.code
        except BaseException:  # what a user would see as a traceback
            rc = "raised"
            print(traceback.format_exc(), file=sys.stderr)
    # pytest records warnings instead of printing them: print them where a terminal shows them
    err = "".join(warnings.formatwarning(w.message, w.category, w.filename, w.lineno, w.line)
                  for w in caught)
    return rc, err + capsys.readouterr().err


def terminal_warning_filters() -> None:
    """What a fresh `python -m` process shows: each warning (this process has shown them
    before, and would stay silent), but no DeprecationWarning from a library."""
    warnings.simplefilter("always")
    for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning,
                     ResourceWarning):
        warnings.filterwarnings("ignore", category=category)


def run_subprocess(entry: str, argv: list[str], cwd: Path) -> tuple[int, str]:
    env = dict(os.environ, PROTOSPACE_NO_MLFLOW="1", OMP_NUM_THREADS="1",
               TOKENIZERS_PARALLELISM="false", PYTHONPATH=str(ROOT))
    p = subprocess.run([PY, "-m", entry, *argv], cwd=cwd, env=env, capture_output=True,
                       text=True, timeout=120)
    return p.returncode, p.stderr


RESULTS: dict[str, tuple[Case, str]] = {}


@pytest.fixture(scope="session")
def artefacts(tmp_path_factory, tiny) -> dict:
    """A tiny solution file, corpus and encoder, built once for every case to copy."""
    from data_gen import build as B
    from encoder.config import EncoderConfig
    from encoder.train import Trainer
    from proto import config as C
    from proto.fit.__main__ import main as fit
    from proto.models import load_model

    root = tmp_path_factory.mktemp("bad-inputs-artefacts")
    sol = root / "sol.safetensors"
    assert fit(["--model", "tiny-random", "--text", "hello", "max_steps=5", "mlflow=false",
                "--out", str(sol)]) == 0
    corpus = root / "corpus"
    cfg = C.load(B.BuildConfig, ROOT / "configs" / "data_gen" / "tiny.yaml", [
        f"out={corpus}", "threads=1", "mlflow=false", "m_init=random", "pairs_per_chunk=0",
        "sources=[{name: random-words, count: 12, lengths: [6]}, "
        "{name: britannica, count: 8, lengths: [6]}]", "chunk_size=10", "batch_size=24",
        "recipe_overrides.max_steps=30"])   # a corpus to read, not to learn from: few steps
    assert B.build(cfg, lm=tiny)["status"] == "complete"
    ecfg = C.load(EncoderConfig, ROOT / "configs" / "encoder" / "tiny.yaml", [
        f"out={root / 'encoder'}", f"data.corpus={corpus}", "mlflow=false", "threads=1",
        "train.steps=2"])
    Trainer(ecfg, lm=load_model("tiny-random", device="cpu"), log=lambda s: None).run()
    return {"sol": sol, "corpus": corpus, "encoder": root / "encoder" / "encoder.pt"}


@pytest.fixture(scope="module", autouse=True)
def write_table():
    yield
    path = os.environ.get(TABLE_ENV)
    if path and len(RESULTS) == len(CASES):  # a partial run (-k) would drop rows
        Path(path).write_text(table_page(RESULTS))


def table_page(results: dict) -> str:
    """The markdown page of the battery: the command front's cases by kind, then the rest by
    entry point, each with the line it printed."""
    front = [(c, e) for c, e in results.values() if c.front]
    rest = [(c, e) for c, e in results.values() if not c.front]
    kinds = list(dict.fromkeys(c.bad for c, _ in front))
    known = [c for c, _ in results.values() if c.xfail]
    lines = [PAGE_HEAD.format(n=len(results), entries=len(BASE), today=time.strftime("%Y-%m-%d"))]
    if known:
        lines += [f"Known failures ({len(known)} cases, strict xfail in the test, so that the "
                  f"fix shows): " + "; ".join(sorted({c.xfail for c in known})) + ".", ""]
    lines += ["## The command front: every entry point", "",
             "| bad input | entry points | the line (proto.fit's) |", "|---|---|---|"]
    for kind in kinds:
        got = [(c, e) for c, e in front if c.bad == kind]
        example = next(e for c, e in got if c.entry == "proto.fit")
        lines.append(f"| {kind} | {len(got)} | {_cell(example)} |")
    lines += ["", "## Each entry point's own inputs", "",
              "| entry point | bad input | the line |", "|---|---|---|"]
    for c, e in rest:
        how = " (subprocess)" if c.subprocess else ""
        note = f" **known failure:** {c.xfail}" if c.xfail else ""
        lines.append(f"| `{c.entry}` | {c.bad}{how} | {_cell(e)}{note} |")
    return "\n".join(lines) + "\n"


def _cell(line: str) -> str:
    return "`" + line.replace("|", "\\|").replace("`", "'") + "`"


PAGE_HEAD = """# Bad inputs: one `error:` line, exit 2, nothing written ({today})

`tests/test_bad_inputs.py` runs every entry point ({entries} commands) against bad input, {n}
cases from one table, and checks each: exactly one line on stderr, starting with `error:`, exit
code 2, no traceback, no exception type standing in for the reason, and no file or directory
created, changed or removed in the case's directory, its inputs included (paths, bytes and
mtimes compared). Most cases call the command's `main(argv)` in-process; those marked
(subprocess) run `python -m ...` and show what reaches a terminal, library warnings included.
Inputs are missing, empty and random-byte files, and copies of a tiny solution file, corpus
and encoder built once per test run on the in-process model `tiny-random` (512 positions),
whole, cut in half or edited. `TMP` is the case's directory.

Regenerate this page (40 s on an idle 2-core CPU, 80 s with its cores shared):

```
PROTOSPACE_BAD_INPUTS_TABLE=docs/research/house/bad-inputs.md \\
    .venv/bin/python -m pytest tests/test_bad_inputs.py -q
```

`data_gen.verify` exits 1, not 2, for a corpus whose shards are damaged: finding damage is
what it is for, and it lists each damaged shard (tests/data_gen/test_build.py); its bad
inputs here are the ones that are not a corpus at all. Likewise `data_gen.build` rewrites a
damaged manifest and redoes a damaged shard of its own corpus on a rerun (resuming is what a
rerun does); what it refuses is a `build.json` it cannot read or one of other settings.

What the battery found when it was written (2026-12-05), each fixed since: tracebacks for a
damaged parquet shard (encoder.train, encoder.evaluate, eval.locality, eval.connectivity),
an older corpus recipe (encoder.evaluate refine=true), refinement of an encoder without m
(encoder.encode), texts beyond the context (eval.bench_fit, bench_tail, recipes), a bad
texts file or encoder (eval.bench_tail), an `out` that is a file (encoder.evaluate) and a
damaged texts_json (eval.recipes); a missing texts_json silently replaced by new texts
(eval.recipes); texts beyond the context that ran anyway (proto.decode, encoder.train,
encoder.evaluate, eval.throughput, eval.bench_encoder); files left behind by proto.meta (its
config, for texts beyond the context), eval.recipes (its run directory) and data_gen.build
(its corpus directory, for an unreadable init_from encoder found after the m warm-up);
argparse's usage block before an unknown flag's error; a note, progress lines or a library's
FutureWarning before the error line (proto.decode, data_gen.build, LoRA encoders); a start
file's error naming only the exception (`EOFError`); and `proto.decode mlflow=false FILE`
reading `mlflow=false` as the solution file.
"""


def _marks(c: Case) -> list:
    return [pytest.mark.xfail(strict=True, reason=c.xfail)] if c.xfail else []


# `cannot read X.pt: UnpicklingError`: a file and then only an exception's name, which says
# nothing about what is wrong with the file
BARE_TYPE = re.compile(r"[/.]\S*: [A-Z][A-Za-z]*(Error|Exception)$")


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=_marks(c)) for c in CASES])
def test_bad_input_is_one_error_line_exit_2_and_writes_nothing(case, artefacts, tmp_path,
                                                              monkeypatch, capsys):
    inputs = Inputs(tmp_path, artefacts)
    argv = [w.format_map(inputs) for w in shlex.split(case.argv)]
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)
    if case.subprocess:
        rc, err = run_subprocess(case.entry, argv, tmp_path)
    else:
        rc, err = run_in_process(case.entry, argv, capsys)
    lines = err.replace(str(tmp_path), "TMP").replace(str(ROOT), ".").splitlines()
    RESULTS[case.id] = (case, lines[-1] if lines else "")
    assert "Traceback" not in err, err
    assert rc == 2, f"exit {rc}; stderr:\n{err}"
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert case.expect in lines[0]
    assert not BARE_TYPE.search(lines[0]), "an exception's name stands in for the reason"
    assert changes(before, snapshot(tmp_path)) == []
