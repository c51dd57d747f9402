"""Store the chunk length that `encoder.encode chunk=auto` uses in an encoder file.

  python docs/research/chunking/store_chunk.py encoder/shipped/smollm2-135m-pos20.pt 6

smollm2-135m-pos20 (the default before the chunk encoder, which needs none: it trained at 6)
stores 6: on 32 held-out 15-20-token sentences C = 6 is within 0.004 of the best column
alone (0.457 vs 0.461 at C = 8) and second only to C = 4 after 10 refinement steps
(0.782; C = 8 0.696), where whole texts give 0.262 / 0.385 (README.md in this folder).
"""
import io
import sys

import torch

from encoder import checkpoint as ckpt
from proto.io import atomic_write_bytes


def main(path: str, chunk: int) -> None:
    blob = ckpt.read(path)
    blob.pop("path", None)
    blob["chunk"] = int(chunk)
    buf = io.BytesIO()
    torch.save(blob, buf)
    atomic_write_bytes(path, buf.getvalue())
    print(f"{path}: chunk={chunk}")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
