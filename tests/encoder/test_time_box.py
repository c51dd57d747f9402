"""train.max_minutes: training stops when the box is spent, and the lr schedule ends where the
first steps' speed says the box ends. Time is a stand-in clock that each step advances."""
import json

import pytest

from encoder.config import EncoderConfig
from encoder.train import ADDED, Cosine, Trainer
from proto import config as C

from .conftest import ROOT

TINY = ROOT / "configs" / "encoder" / "tiny-positional.yaml"


class Timed(Trainer):
    """Each optimiser step takes `seconds(step)` of the stand-in clock; nothing else does."""

    def __init__(self, cfg, lm, seconds):
        self.lines = []
        super().__init__(cfg, lm=lm, log=self.lines.append)
        self.now, self.seconds = 0.0, seconds

    def clock(self):
        return self.now

    def train_step(self):
        self.now += self.seconds(self.step + 1)
        return super().train_step()


def run(tiny, out, seconds, *overrides):
    cfg = C.load(EncoderConfig, TINY, [f"out={out}", "mlflow=false", "threads=1",
                                       "train.steps=40", "train.max_minutes=1",
                                       "train.warmup_steps=2", "train.eval_every=100",
                                       "train.save_every=100", *overrides])
    t = Timed(cfg, tiny, seconds)
    return t.run(), t


def _lrs(out):
    return [r["lr"] for r in json.loads((out / "history.json").read_text())["train"]]


def test_the_schedule_is_transformers_cosine_with_a_floor():
    import torch
    from transformers import get_cosine_with_min_lr_schedule_with_warmup
    p = torch.nn.Parameter(torch.zeros(1))
    ref = get_cosine_with_min_lr_schedule_with_warmup(torch.optim.SGD([p], lr=1.0), 3, 20,
                                                      min_lr_rate=0.1)
    ours = Cosine(3, 20, 0.1)
    assert [ours(s) for s in range(21)] == [f(s) for s in range(21) for f in ref.lr_lambdas]
    assert Cosine(3, None, 0.1)(10) == 1.0 and Cosine(3, 20, 0.1)(30) == pytest.approx(0.1)


def test_the_box_sets_the_horizon_and_the_schedule_ends_with_it(tiny, tmp_path):
    # 5 s a step: after the probe (steps 2-6, 30 s spent) 6 more steps fill the minute
    s, t = run(tiny, tmp_path / "box", lambda step: 5.0)
    assert s["steps"] == 12 and s["finished"]
    assert any("ends at step 12" in line for line in t.lines)
    lrs = _lrs(tmp_path / "box")
    assert lrs[-1] == pytest.approx(1e-2 * 0.1) and max(lrs) == pytest.approx(1e-2)
    again, _ = run(tiny, tmp_path / "box", lambda step: 5.0)   # a finished box stays finished
    assert again["steps"] == 12 and again["finished"]


def test_a_slower_run_stops_when_the_box_is_spent(tiny, tmp_path):
    s, t = run(tiny, tmp_path / "slow", lambda step: 5.0 if step <= 6 else 10.0)
    assert s["steps"] == 9 and s["finished"]     # 30 s + 3 x 10 s
    assert any("spent at step 9" in line for line in t.lines)


def test_a_resumed_box_goes_on_from_the_time_it_had_spent(tiny, tmp_path):
    first, _ = run(tiny, tmp_path / "resumed", lambda step: 5.0, "train.stop_after=8")
    assert first["steps"] == 8 and not first["finished"]
    second, _ = run(tiny, tmp_path / "resumed", lambda step: 5.0)
    assert second["steps"] == 12 and second["finished"]
    assert _lrs(tmp_path / "resumed")[-1] == pytest.approx(1e-2 * 0.1)


# keys added to the config after runs had been written (encoder.train.ADDED must hold each)
@pytest.mark.parametrize("key", sorted({"train.max_minutes", "train.e_noise"} | set(ADDED)))
def test_a_run_written_before_a_key_existed_resumes(tiny, tmp_path, key):
    """(make demo's encoders, say, written before train.e_noise existed)"""
    out = tmp_path / "old"
    first, _ = run(tiny, out, lambda step: 5.0, "train.max_minutes=0", "train.steps=3",
                   "train.stop_after=2")
    info = json.loads((out / "run.json").read_text())
    del info["content"][key]
    (out / "run.json").write_text(json.dumps(info))
    second, _ = run(tiny, out, lambda step: 5.0, "train.max_minutes=0", "train.steps=3")
    assert (first["steps"], second["steps"]) == (2, 3) and second["finished"]


def test_a_negative_box_is_refused():
    with pytest.raises(C.ConfigError, match="max_minutes"):
        C.load(EncoderConfig, TINY, ["train.max_minutes=-1"])
