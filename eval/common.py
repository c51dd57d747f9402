"""What the eval commands share, above all their one command front, `run_command`.

Every eval command (locality, connectivity, arrangements, sharing, capacity) runs through
`run_command`: parse `[--config FILE] [--corpus DIR] key=value ...` (proto.config.parse_cli),
run the command's preflight checks, open an MLflow run (experiment `eval`), run the command's
body inside it, print the body's text and, as the last stdout line, its JSON summary. A bad
config key, or one of the exception types the command names as bad input, is one `error:`
line and exit code 2, and no MLflow run is opened for input the preflight rejects.

The paper-table commands (eval.arrangements, eval.sharing, eval.capacity) are each a config
dataclass, a `study(cfg, log)` that fits texts and returns a JSON-able report, and `table` /
`plot` / `summary` / `metrics` views of that report; `table_main` runs them through
`run_command`, writing config.yaml, results.json, table.md and the plot atomically into the
config's `out` directory. For them a bad key, an unknown model or source, or a length the
model cannot hold is the `error:` line.
"""
from __future__ import annotations

import contextlib
import math
import statistics
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, TypeVar

from proto import config as C
from proto.report import write_outputs

if TYPE_CHECKING:
    from proto.fit import Recipe

# torch and proto.fit are imported where used: the front (and with it `--help` and config
# errors of eval.locality / eval.connectivity) must not pay for them.

T = TypeVar("T")


def stderr_log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def resolve_recipe(name: str, overrides: dict, max_steps: int, **fixed) -> Recipe:
    """The named recipe with the config's field overrides; max_steps > 0 replaces its cap."""
    from proto.fit import get_recipe
    extra = dict(overrides)
    if max_steps > 0:
        extra["max_steps"] = max_steps
    extra.update(fixed)
    return get_recipe(name, **extra)


def check_recipe(name: str, overrides: dict, max_steps: int) -> None:
    """For __post_init__: an unknown recipe or Recipe field is a config error, found early."""
    if max_steps < 0:
        raise ValueError("max_steps must be >= 0 (0 = the recipe's own cap)")
    resolve_recipe(name, overrides, max_steps)


def prefix_texts(lm, source: str, max_len: int, count: int, seed: int) -> list[list[int]]:
    """`count` texts of `max_len` tokens; the studies fit their prefixes, as the paper does
    ('trained on prefixes of these texts at lengths ...')."""
    from proto.sources import sample_texts
    got = [ids for _, ids in sample_texts(lm.tokenize, source, max_len, count, seed=seed)]
    if len(got) < count:
        raise C.ConfigError(f"source {source!r} gave {len(got)} texts of {max_len} tokens, "
                            f"{count} needed")
    return got


def check_fits(lm, recipe: Recipe, max_len: int) -> None:
    from proto.arrangement import Arrangement, prefix_ids
    arr = Arrangement(recipe.arrangement, prefix_ids(lm.tokenizer, recipe.prefix))
    if arr.input_length(max_len) > lm.max_positions:
        raise C.ConfigError(f"{max_len} tokens in arrangement {recipe.arrangement} need "
                            f"{arr.input_length(max_len)} positions, more than the model's "
                            f"context of {lm.max_positions}")


def mean_std(xs) -> tuple[float, float]:
    """Mean and population std (the paper's ± columns); NaN for an empty list."""
    xs = [float(x) for x in xs]
    if not xs:
        return math.nan, math.nan
    return statistics.fmean(xs), statistics.pstdev(xs)


def pm(mean: float, std: float | None = None, digits: int = 2) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "—"
    if std is None:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


@contextlib.contextmanager
def torch_threads(n: int):
    """threads > 0 pins torch's CPU threads for the run (set 1 when another job shares the
    cores: oversubscribed cores slow every step many-fold), then restores them."""
    import torch
    old = torch.get_num_threads()
    if n > 0:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if n > 0:
            torch.set_num_threads(old)


def run_command(cls: type[T], doc: str, argv, name: str,
                body: Callable[[T, Any], tuple[str, dict]], *,
                errors: tuple[type[Exception], ...] | Callable[[], tuple],
                preflight: Callable[[T], object] | None = None,
                run_name: Callable[[T], str] | None = None,
                paths: dict[str, str] | None = None) -> int:
    """The one front of every `python -m eval.NAME` command; returns the exit code.

    cls, doc   the config dataclass and the help text (the command's module docstring)
    body       body(cfg, mr) -> (text, summary): does the work inside the MLflow run `mr`;
               `text` is printed, then `summary` as the JSON last line of stdout
    errors     the exception types that mean bad input (one `error:` line, exit 2); or a
               function returning them, called only once something was raised (so their
               modules are imported only then)
    preflight  preflight(cfg) checks that must fail before an MLflow run is opened
    run_name   run_name(cfg) -> the MLflow run name (default: `name`)
    paths      verbatim path flags, e.g. {"corpus": help} for `--corpus DIR` (parse_cli)
    """
    cfg = C.parse_cli(cls, doc, argv, prog=f"python -m eval.{name}", paths=paths)
    if cfg is None:
        return 2
    from proto.tracking import run as mlflow_run
    try:
        if preflight is not None:
            preflight(cfg)
        with mlflow_run("eval", cfg, run_name=run_name(cfg) if run_name else name,
                        enabled=cfg.mlflow) as mr:
            text, summary = body(cfg, mr)
    except Exception as exc:
        if not isinstance(exc, errors if isinstance(errors, tuple) else errors()):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(text)
    C.print_summary(summary)
    return 0


def check_out_dir(cfg) -> None:
    """Preflight of the paper-table commands: `out` must be a directory, or not exist yet."""
    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise C.ConfigError(f"out {out} exists and is not a directory")


def table_errors() -> tuple[type[Exception], ...]:
    """The bad-input errors of the paper-table commands (imported when one is raised)."""
    from proto.models import ModelLoadError
    from proto.sources import SourceError
    return C.ConfigError, ModelLoadError, SourceError


def table_body(name: str, study, table, plot, summary, metrics, *,
               out: Callable[[Any], Path] = lambda cfg: Path(cfg.out),
               threads: Callable[[int], Any] = torch_threads,
               after: Callable[[dict, Any], None] | None = None):
    """The `run_command` body of a table command: `study` under the config's threads, then
    config.yaml, results.json, table.md and NAME.png written into out(cfg) and logged with the
    metrics, then after(rep, mr) for any further logging; returns (table, summary)."""

    def body(cfg, mr) -> tuple[str, dict]:
        where = out(cfg)
        with threads(cfg.threads):
            t0 = time.time()
            rep = study(cfg, log=stderr_log)
            rep["seconds"] = time.time() - t0
            md = table(rep)
            write_outputs(where, cfg, rep, mr, plots={f"{name}.png": plot}, table=md)
            mr.metrics(metrics(rep))
        if after is not None:
            after(rep, mr)
        s = {"out": str(where), "model": rep["model"]["name"],
             "seconds": round(rep["seconds"], 1)}
        s.update(summary(rep))
        return md, s

    return body


def table_main(cls, doc: str, argv, name: str, study, table, plot, summary, metrics) -> int:
    """A paper-table command through `run_command`; returns the exit code."""
    return run_command(cls, doc, argv, name,
                       table_body(name, study, table, plot, summary, metrics),
                       errors=table_errors, preflight=check_out_dir)
