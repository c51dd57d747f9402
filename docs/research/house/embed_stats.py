"""Re-save an encoder file made before the embedding table's statistics were saved with it,
so that its forward pass reads only what the file holds (the statistics are rebuilt once, in
the precision the file records, exactly as its loads did before).

  python docs/research/house/embed_stats.py encoder/shipped/smollm2-135m.pt
"""
import io
import sys

import torch

from encoder import checkpoint as ckpt
from encoder.models import STATS
from proto.io import atomic_write_bytes


def main(path: str) -> None:
    enc, _, _, blob = ckpt.load(path)
    state = enc.trainable_state()
    added = sorted(k for k in STATS if k in state and k not in blob["state"])
    for k in added:
        blob["state"][k] = state[k]
    blob.pop("path", None)
    buf = io.BytesIO()
    torch.save(blob, buf)
    atomic_write_bytes(path, buf.getvalue())
    print(f"{path}: added {added or 'nothing'}")


if __name__ == "__main__":
    main(sys.argv[1])
