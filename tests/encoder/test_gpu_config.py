"""configs/encoder/gpu.yaml, gpu-n8.yaml and gpu-n16.yaml at any world size, and gpu.yaml's
precision path (DeepSpeed's bf16 weights, ZeRO-2) run by the deepspeed launcher on 2 gloo ranks
with the tiny model, as the config's header documents it (scripts/gpu_encoders.sh runs the
gpu-n* configs' path on one rank: test_gpu_encoders_script.py)."""
import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import torch

from encoder.config import EncoderConfig
from encoder.core import EncoderError
from encoder.train import batch_plan, ds_config
from proto import config as C

from .conftest import ROOT
from .test_launchers import DIST_VARS, _exe, _prefix, check_run

GPU = ROOT / "configs" / "encoder" / "gpu.yaml"
GPU_N = {n: ROOT / "configs" / "encoder" / f"gpu-n{n}.yaml" for n in (8, 16)}
# the header's tiny overrides, as written there
TINY = ["llm=tiny-random", "m=learned", "model.positions=8", "data.lengths=[6,8]",
        "data.stream.prose_sources=[plays]", "data.eval_texts=4", "train.steps=2",
        "train.global_batch=16", "train.eval_every=2", "train.save_every=2", "threads=1"]


@pytest.mark.parametrize("world,micro,accum", [(1, 128, 4), (2, 128, 2), (4, 128, 1),
                                               (8, 64, 1)])
def test_gpu_yaml_splits_its_global_batch_at_every_world_size(world, micro, accum):
    ds = ds_config(C.load(EncoderConfig, GPU), world)
    assert (ds["train_micro_batch_size_per_gpu"], ds["gradient_accumulation_steps"]) == (
        micro, accum)
    assert ds["train_batch_size"] == micro * accum * world == 512
    assert ds["bf16"]["enabled"]


@pytest.mark.parametrize("n", sorted(GPU_N))
@pytest.mark.parametrize("world,micro", [(1, 512), (2, 256), (4, 128), (8, 64)])
def test_gpu_n_yaml_takes_its_batch_in_one_pass_per_rank_at_every_world_size(n, world, micro):
    cfg = C.load(EncoderConfig, GPU_N[n])
    ds = ds_config(cfg, world)
    assert (ds["train_micro_batch_size_per_gpu"], ds["gradient_accumulation_steps"]) == (
        micro, 1)
    assert ds["train_batch_size"] == micro * world == 512
    assert ds["bf16"]["enabled"] and ds["zero_optimization"]["stage"] == 2
    # the H200 probe's recipe: no clipping, a time box, its positions and training length
    assert ds["gradient_clipping"] == 0
    assert cfg.model.positions == n and cfg.data.lengths == [n] and not cfg.model.whiten
    assert cfg.train.max_minutes > 0 and cfg.train.lr == cfg.train.head_lr == 3e-3


def _header_overrides(path) -> list[str]:
    """The key=value words of the tiny CPU command in a config's header, as written there."""
    head = "".join(ln[1:].rstrip().rstrip("\\") + " " for ln in path.read_text().splitlines()
                   if ln.startswith("#"))
    cmd = head[head.index("--num_gpus 2"):]
    return [w.strip('"') for w in re.findall(r'"[^"]+"|\S+=\S+', cmd)
            if "=" in w and not w.startswith("--")]


@pytest.mark.parametrize("n", sorted(GPU_N))
def test_gpu_n_yaml_header_tiny_command_is_a_valid_config(n):
    over = _header_overrides(GPU_N[n])
    assert "llm=tiny-random" in over and "train.max_minutes=0" in over
    cfg = C.load(EncoderConfig, GPU_N[n], over)
    assert cfg.llm == "tiny-random" and cfg.train.steps == 2
    assert cfg.data.stream.prose_sources == ["plays"]
    assert cfg.out == f"outputs/encoder/gpu-n{n}-tiny"
    assert ds_config(cfg, 2)["train_micro_batch_size_per_gpu"] == 8


def test_the_micro_batch_is_the_largest_that_splits_the_batch():
    assert batch_plan(16, 16, 1) == (16, 1)      # the configs written for one rank, unchanged
    assert batch_plan(16, 16, 2) == (8, 1)
    assert batch_plan(510, 128, 2) == (85, 3)
    assert batch_plan(14, 4, 2) == (1, 7)


def test_a_batch_the_ranks_cannot_split_names_the_values_that_work():
    with pytest.raises(EncoderError) as exc:
        ds_config(C.load(EncoderConfig, GPU), 3)
    msg = str(exc.value)
    assert "\n" not in msg
    assert "510 or 513" in msg and "1, 2, 4, 8" in msg


def test_the_refusal_is_one_error_line_and_writes_nothing(monkeypatch, capsys, tmp_path):
    import encoder.train as T
    monkeypatch.setattr(T, "init_distributed", lambda device: (0, 3))
    out = tmp_path / "run"
    assert T.main(["--config", str(GPU), f"out={out}", "mlflow=false", "device=cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: train.global_batch 512")
    assert not out.exists()


def test_an_encoder_in_bf16_as_deepspeed_casts_it_gives_fp32_e_and_saves_fp32(tiny):
    """DeepSpeed's bf16 casts the parameters only; the buffers (offset, the table's
    statistics) stay fp32."""
    from encoder.models import Encoder, pad_batch
    cfg = C.load(EncoderConfig, GPU, TINY + ["model.residual_layers=1"]).model
    d = tiny.d_model
    enc = Encoder(cfg, tiny, torch.zeros(d), torch.randn(d), train_m=True)
    for p in enc.parameters():
        p.data = p.data.to(torch.bfloat16)
    ids, mask = pad_batch([[5, 6, 7], [8, 9]], "cpu")
    e = enc({"ids": ids, "mask": mask, "texts": ["", ""]})
    assert e.dtype == torch.float32 and e.shape == (2, d)
    e.sum().backward()
    assert enc.pmap.A.grad is not None
    assert {v.dtype for v in enc.trainable_state().values()} == {torch.float32}


def test_two_ranks_of_gpu_yaml_train_in_bf16_and_the_checkpoint_encodes(tmp_path, capsys):
    if _exe("deepspeed") is None:
        pytest.skip("the deepspeed launcher is not installed here")
    out = tmp_path / "gpu-tiny"
    env = {k: v for k, v in os.environ.items() if k not in DIST_VARS}
    env.update(PROTOSPACE_NO_MLFLOW="1", DS_ACCELERATOR="cpu")
    r = subprocess.run(_prefix("deepspeed") + ["--config", str(GPU), *TINY, f"out={out}",
                                               "mlflow=false"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    check_run(r, out, world=2)
    assert "micro-batch 8 x 1 accumulation x 2 ranks" in r.stderr
    trained = torch.load(next(out.glob("ckpt/step2/mp_rank_00_model_states.pt")),
                         weights_only=False)["module"]
    assert trained["pmap.A"].dtype == torch.bfloat16
    saved = torch.load(out / "encoder.pt", weights_only=True)["state"]
    assert saved["pmap.A"].dtype == torch.float32 and saved["pmap.A"].abs().max() > 0

    from encoder.encode import main as encode
    sol = tmp_path / "enc.safetensors"
    capsys.readouterr()
    assert encode(["--checkpoint", str(out), "--text", "hello", "--out", str(sol),
                   "mlflow=false"]) == 0
    s = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert s["texts"] == 1 and Path(sol).is_file()
