"""Ship a trained encoder as the package default: encoder/shipped/<model>.pt (+ history, plot).

  python docs/research/encoder/ship_encoder.py outputs/encoder/default

The encoder file already records its config, step, held-out metrics, corpus and the decoder's
weight hash (encoder.checkpoint); this copies it and its learning curve beside it.
"""
import shutil
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[3]


def main(run: str) -> None:
    src = Path(run)
    blob = torch.load(src / "encoder.pt", map_location="cpu", weights_only=True)
    name = blob["llm"]["name"]
    dst = ROOT / "encoder" / "shipped"
    dst.mkdir(exist_ok=True)
    shutil.copyfile(src / "encoder.pt", dst / f"{name}.pt")
    shutil.copyfile(src / "history.json", dst / f"{name}.history.json")
    shutil.copyfile(src / "learning_curve.png", dst / f"{name}.png")
    print(f"shipped {src / 'encoder.pt'} (step {blob['step']}, decoder {name} "
          f"{blob['llm']['weights_sha256'][:12]}) as {dst / (name + '.pt')}")


if __name__ == "__main__":
    main(sys.argv[1])
