"""One config system for every command: nested dataclasses -> YAML file -> `a.b=value` overrides.

Defaults live in the dataclasses, a YAML file overrides them, CLI `key=value` pairs override
the file. Unknown keys anywhere are rejected with the list of valid ones, values are coerced to
the annotated type, and each dataclass may check itself in `__post_init__`. The resolved config
is what gets saved next to every output and logged to MLflow.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from .io import atomic_write_bytes

T = TypeVar("T")

# the --summary FILE of the command being run; parse_cli sets it, print_summary reads it
_summary_file: Path | None = None


class ConfigError(ValueError):
    """A config problem that should end the command with one clear line."""


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _coerce(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{where}: {value!r} fits none of {tp}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {list(args)}")
        return value
    if _is_dataclass_type(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return from_dict(tp, value, where)
    if origin in (list, tuple):
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        inner = args[0] if args else Any
        out = [_coerce(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):
            # YAML 1.1 reads 3e-3 (no dot) as a string; a float field means the number
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def from_dict(cls: type[T], data: dict, where: str = "config") -> T:
    """Build dataclass `cls` from a (nested) dict, rejecting unknown keys."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {unknown}; valid keys: {sorted(fields)}")
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}") for k, v in data.items()}
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from None


def to_dict(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _set_path(d: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    cur = d
    for p in parts[:-1]:
        nxt = cur.get(p)
        if nxt is None:
            nxt = cur[p] = {}
        if not isinstance(nxt, dict):
            raise ConfigError(f"override {dotted}: {p} is not a section")
        cur = nxt
    cur[parts[-1]] = value


def parse_overrides(items: list[str]) -> dict:
    """`["fit.lr=0.03", "name=x"]` -> nested dict; values parsed as YAML scalars."""
    out: dict = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not key=value")
        key, raw = item.split("=", 1)
        if not key:
            raise ConfigError(f"override {item!r} has an empty key")
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        _set_path(out, key.strip(), value)
    return out


def deep_merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def read_yaml(path: str | Path) -> dict:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {p}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config {p}: {exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config {p} is not valid YAML: {exc}".splitlines()[0]) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config {p}: top level must be a mapping")
    return data


def load(cls: type[T], path: str | Path | None = None, overrides: list[str] | None = None,
         verbatim: dict[str, Any] | None = None) -> T:
    """Defaults of `cls`, then the YAML file, then `key=value` overrides, then `verbatim`
    top-level values (taken as given, never YAML-parsed: paths from flags like --corpus)."""
    data = read_yaml(path) if path else {}
    data = deep_merge(data, parse_overrides(overrides or []))
    data.update(verbatim or {})
    return from_dict(cls, data)


CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def producing_config(section: str, out: str | Path) -> Path | None:
    """The shipped config under configs/<section>/ whose `out` is `out`, if one is: what a
    "missing input" error names as the command that makes it."""
    want = Path(out).resolve()
    for f in sorted((CONFIGS / section).glob("*.yaml")):
        try:
            data = yaml.safe_load(f.read_text()) or {}
        except (OSError, yaml.YAMLError):
            continue
        if isinstance(data, dict) and data.get("out") and Path(data["out"]).resolve() == want:
            try:
                return f.relative_to(Path.cwd())
            except ValueError:
                return f
    return None


def dump_yaml(obj: Any) -> str:
    return yaml.safe_dump(to_dict(obj), sort_keys=False)


class _OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad flag ends like every other bad input: one `error:` line, exit 2
    (argparse's own usage block would bury the one line that says what is wrong)."""

    def error(self, message: str):
        print(f"error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def _place_positionals(a: argparse.Namespace, names: list[str], fields: set[str]) -> None:
    """argparse gives the first free word to the positional even when it is an override
    (`proto.decode mlflow=false FILE` read the path `mlflow=false`): the positionals are the
    first words that are not `field=...` of a known field, in order."""
    words = [w for w in (getattr(a, n) for n in names) if w is not None] + list(a.overrides)
    keyed = ["=" in w and w.split("=", 1)[0].split(".")[0] in fields for w in words]
    plain = [w for w, k in zip(words, keyed) if not k]
    for n in names:
        setattr(a, n, plain.pop(0) if plain else None)
    a.overrides = [w for w, k in zip(words, keyed) if k] + plain


LOCAL_RANK_FLAGS = ("--local_rank", "--local-rank")  # deepspeed; torch.distributed.launch


def take_local_rank(argv: list[str]) -> list[str]:
    """argv without the launchers' `--local_rank N` / `--local_rank=N`, which is no config key.
    The flag fills in LOCAL_RANK where no launcher set it; where one did (torchrun, deepspeed),
    the environment wins, since it is what torch.distributed and DeepSpeed read."""
    rest, flag = [], None
    it = iter(argv)
    for a in it:
        name, eq, value = a.partition("=")
        if name not in LOCAL_RANK_FLAGS:
            rest.append(a)
            continue
        flag = value if eq else next(it, "")
        _check_rank(flag, name)
    if flag is not None:
        os.environ.setdefault("LOCAL_RANK", flag)
    _check_rank(os.environ.get("LOCAL_RANK", "0"), "LOCAL_RANK")
    return rest


def _check_rank(value: str, where: str) -> None:
    if not (value.isascii() and value.isdigit()):
        raise ConfigError(f"{where} must be a local rank (0, 1, ...), not {value!r}")


def parse_cli(cls: type[T], doc: str, argv=None, prog: str | None = None,
              paths: dict[str, str] | None = None, lists: dict[str, str] | None = None,
              positional: dict[str, str] | None = None) -> T | None:
    """The shared front of a command:
    `[--config FILE] [--summary FILE] [--FIELD PATH ...] [key=value ...]`.

    `paths` maps config fields to help texts for flags like `--corpus DIR`; their values are
    taken verbatim (a path is never YAML-parsed) and win over the file and the overrides.
    `lists` does the same for repeatable flags (`--text A --text B`) of list fields;
    `positional` names fields given as leading positional arguments (`proto.decode FILE`). A
    field's flag is spelled with dashes or underscores (`--texts-file`, `--texts_file`).
    `--summary FILE` names a file for the summary that `print_summary` prints.
    Returns None after printing one `error:` line when the config is bad (callers exit 2).
    """
    p = _OneLineParser(prog=prog, description=doc,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    for field, help_text in (paths or {}).items():
        flags = sorted({f"--{field}", f"--{field.replace('_', '-')}"})
        p.add_argument(*flags, dest=field, default=None, help=help_text)
    for field, help_text in (lists or {}).items():
        p.add_argument(f"--{field.replace('_', '-')}", dest=field, action="append",
                       default=None, help=help_text)
    p.add_argument("--config", default=None, help=f"YAML file of {cls.__name__} fields")
    p.add_argument("--summary", metavar="FILE", default=None,
                   help="also write the one-line JSON summary to FILE")
    for field, help_text in (positional or {}).items():
        # optional here: a missing one is the config's own one-line error (__post_init__)
        p.add_argument(field, nargs="?", default=None, help=help_text)
    p.add_argument("overrides", nargs="*", help="key=value (dotted keys for nested fields)")
    # every command runs under the launchers (data_gen.build shards by rank too)
    try:
        argv = take_local_rank(list(sys.argv[1:] if argv is None else argv))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None
    # intermixed: key=value overrides may come before and after the flags
    a = p.parse_intermixed_args(argv)
    if positional:
        _place_positionals(a, list(positional), {f.name for f in dataclasses.fields(cls)})
    hints = typing.get_type_hints(cls)
    global _summary_file
    _summary_file = None
    try:
        summary_file = _summary_target(a.summary)
        given = {}
        for f in {**(paths or {}), **(lists or {}), **(positional or {})}:
            v = getattr(a, f)
            if v is not None:
                # a path is taken as given; a flag of a typed field (--restarts 2) as YAML
                given[f] = v if hints.get(f) in (str, list[str]) else parse_overrides(
                    [f"{f}={v}"])[f]
        cfg = load(cls, a.config, a.overrides, given)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None
    _summary_file = summary_file
    return cfg


def _summary_target(path: str | None) -> Path | None:
    """--summary FILE, refused before any work when it could never be written."""
    if path is None:
        return None
    target = Path(path)
    if target.is_dir():
        raise ConfigError(f"--summary {path} is a directory: give a file name")
    parent = target.parent
    while not parent.exists():  # atomic_write_bytes creates the missing directories
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"--summary {path} cannot be written ({parent} is not a writable "
                          f"directory)")
    return target


def print_summary(summary: dict) -> None:
    """A command's last stdout line, the one-line JSON summary; also written to --summary FILE
    when given, since under a launcher the launcher's own log lines come after it."""
    line = json.dumps(summary)
    print(line, flush=True)
    if _summary_file is not None:
        atomic_write_bytes(_summary_file, (line + "\n").encode())
