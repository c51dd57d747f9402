"""The one progress mechanism of every command: tqdm bars on stderr, on rank 0 only, quiet when
stderr is not a terminal or under CI (PROTOSPACE_PROGRESS=1 forces them on, e.g. for logs).

  with bar(total=100, desc="fit", unit="text") as b: ... b.update(1)
  fitter.fit(rows, progress=FitProgress(len(rows), "fit"))   # a Fitter.fit callback
"""
from __future__ import annotations

import os
import sys

from tqdm import tqdm


def enabled() -> bool:
    if int(os.environ.get("RANK", "0")) != 0:
        return False
    if os.environ.get("PROTOSPACE_PROGRESS") == "1":
        return True
    if os.environ.get("CI") or os.environ.get("PROTOSPACE_PROGRESS") == "0":
        return False
    return sys.stderr.isatty()


def bar(total: int | None = None, desc: str = "", unit: str = "it", initial: int = 0,
        mininterval: float = 2.0, **kw) -> tqdm:
    return tqdm(total=total, desc=desc, unit=unit, initial=initial, file=sys.stderr,
                mininterval=mininterval, dynamic_ncols=True, disable=not enabled(), **kw)


class FitProgress:
    """A Fitter.fit progress callback: a bar of rows done, with solved rows and step time; it
    closes itself when every row is done."""

    def __init__(self, total: int | None = None, desc: str = "fit", every: float = 2.0):
        self.bar = bar(total, desc, unit="row", mininterval=every)

    def __call__(self, s: dict) -> None:
        if self.bar.total is None:
            self.bar.total = s["total"]
        self.bar.update(s["done"] - self.bar.n)
        self.bar.set_postfix(solved=s["solved"], active=s["active"], step=s["step"],
                             s_per_step=f"{s['step_seconds']:.2f}", refresh=False)
        if s["done"] >= s["total"]:
            self.close()

    def close(self) -> None:
        self.bar.close()
