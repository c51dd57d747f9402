"""A row counts as solved only if it decodes: the stop margin, the fitter's check of what it
calls solved, and the one precision decision that every command makes."""
import dataclasses
import json

import pytest
import torch

from proto import models as M
from proto.decode.__main__ import main as decode_main
from proto.fit import FitRow, Fitter, get_recipe
from proto.fit.__main__ import main as fit_main
from proto.onepass import token_margins

TEXTS = ["hello world", "one two", "a cat sat"]


def test_token_margins_are_the_lead_over_the_best_other_token():
    logits = torch.tensor([[[1.0, 3.0, 2.5], [4.0, 0.0, 5.0]]])
    lead = token_margins(logits, torch.tensor([[1, 0]]))
    assert lead.tolist() == [[0.5, -1.0]]
    assert token_margins(logits, torch.tensor([[1, -100]]))[0, 1] == float("inf")


def test_solved_rows_lead_by_the_stop_margin(tiny):
    rows = [FitRow(tiny.tokenize(t), f"t{i}") for i, t in enumerate(TEXTS)]
    res = Fitter(tiny, get_recipe("default", stop_margin=2.0, max_steps=400)).fit(rows)
    assert any(r.solved for r in res)
    assert all(r.margin >= 2.0 for r in res if r.solved)
    plain = Fitter(tiny, get_recipe("default", stop_margin=0.0, max_steps=400)).fit(rows)
    # the margin is paid for in steps, never saved
    assert sum(r.steps for r in res) > sum(r.steps for r in plain)


def test_a_solved_row_that_does_not_decode_is_reported_unverified(tiny):
    rows = [FitRow(tiny.tokenize(t), f"t{i}") for i, t in enumerate(TEXTS)]
    fitter = Fitter(tiny, get_recipe("default", max_steps=400))
    res = fitter.fit(rows)
    assert all(r.solved for r in res)
    forged = dataclasses.replace(res[1], e=torch.zeros_like(res[1].e))
    out = fitter.verified(rows, [res[0], forged, res[2]])
    assert [r.solved for r in out] == [True, False, True]
    assert out[1].status == "unverified" and out[1].accuracy < 1


def test_fit_in_bf16_then_decode_every_solved_row_exactly(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PROTOSPACE_CPU_BF16", "1")
    M.cpu_precision.cache_clear()
    out = tmp_path / "s.safetensors"
    args = ["--model", "tiny-random", "dtype=bf16", "max_steps=400", "mlflow=false",
            "--out", str(out)] + [a for t in TEXTS for a in ("--text", t)]
    assert fit_main(args) == 0
    fit = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert fit["solved"] >= 2
    assert decode_main([str(out), "mlflow=false"]) == 0
    dec = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert dec["exact"] >= fit["solved"]
    M.cpu_precision.cache_clear()


@pytest.mark.parametrize("asked, record, what, want", [
    ("bf16", "float32", "x", torch.bfloat16),         # dtype= is honoured over the record
    ("auto", "bfloat16", "x", torch.bfloat16),        # the record decides auto
    ("", None, "x", torch.float32),                   # an artefact without a record: fp32
])
def test_one_precision_decision(asked, record, what, want):
    got = M.decide_precision(asked, torch.device("cpu"), record, what)
    assert got.dtype == want and got.why
    assert got.overrides == (asked == "bf16")


def test_auto_without_artefact_is_the_machines_choice(monkeypatch):
    for flag, want in (("1", torch.bfloat16), ("0", torch.float32)):
        monkeypatch.setenv("PROTOSPACE_CPU_BF16", flag)
        M.cpu_precision.cache_clear()
        assert M.decide_precision("auto", torch.device("cpu"))[0] == want
    M.cpu_precision.cache_clear()


def test_an_unwritable_cache_gives_fp32_without_timing(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("PROTOSPACE_CACHE", str(blocker / "cache"))   # under a plain file
    monkeypatch.delenv("PROTOSPACE_CPU_BF16", raising=False)
    monkeypatch.setattr(M, "_cpu_identity", lambda: ("cpu", {"avx512_bf16"}))
    monkeypatch.setattr(M, "_measure_bf16_ratio", lambda: pytest.fail("timed"))
    M.cpu_precision.cache_clear()
    got = M.cpu_precision()
    M.cpu_precision.cache_clear()
    assert got["fast_bf16"] is False and "cannot be written" in got["reason"]


def test_an_unsolved_row_reports_its_best_state_not_its_last(tiny):
    from proto.onepass import OnePass
    rows = [FitRow(tiny.tokenize(t), f"t{i}") for i, t in enumerate(TEXTS)]
    solved = Fitter(tiny, get_recipe("default", max_steps=400)).fit(rows)
    assert all(r.solved for r in solved)
    # from solutions, a margin no row reaches and an lr far too large: the first state is the
    # best one, and the steps throw the rows off it
    recipe = get_recipe("default", lr=3.0, schedule="constant", max_steps=6, restart_after=0,
                        stop_margin=99.0, init_std=1e-6)
    fitter = Fitter(tiny, recipe, tail_restarts=0)
    fitter.row_center = lambda row: {k: getattr(solved[int(row.key[1:])], k) for k in "em"}
    res = fitter.fit(rows, trace=tuple(range(7)))
    assert not any(r.solved for r in res)
    assert any(list(r.trace.values())[-1] < 1 for r in res)
    for row, r in zip(rows, res):
        assert r.accuracy == max(r.trace.values()) == 1.0
        pred = OnePass(tiny, fitter.arr).decode(r.e.unsqueeze(0), r.m.unsqueeze(0),
                                                [row.token_ids])[0]
        assert pred == row.token_ids
