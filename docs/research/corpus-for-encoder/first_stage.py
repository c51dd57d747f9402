"""The corpus as the positional encoder's first stage: ridge least squares of its linear code
on a corpus's (text, e*) pairs, written into an encoder file that `encoder.train init_from=`
continues with the decode loss.

e = offset + sum_i h_i A_i (h_i the whitened input embedding of token i, A_i d x d) is linear
in the stacked maps, so the maps that best reproduce the corpus's solutions solve a ridge
problem in closed form; with fewer texts than N * d features its dual form is a small n x n
solve. The corpus must share the encoder's m (m_init: start), its texts the encoder's length;
only texts of contexts the encoder does not hold out are used (encoder.data.held_out).

  python docs/research/corpus-for-encoder/first_stage.py CORPUS TEMPLATE OUT.pt [ALPHA]

TEMPLATE is an encoder file of the run's model config (e.g. a 1-step run of the same config):
its offset, m and whitening statistics are kept, its maps replaced. ALPHA scales the ridge
term by the mean squared norm of a text's features (default 0.1).
"""
import io
import sys

import torch

from data_gen.stream import StreamConfig
from encoder import checkpoint as ckpt
from encoder.config import DataConfig
from encoder.data import corpus_examples, held_out
from proto.io import atomic_write_bytes


def features(enc, token_lists: list[list[int]]) -> torch.Tensor:
    """[n, N * d]: the encoder's own per-position inputs (its body: whitened embeddings),
    stacked by position; the maps read exactly these."""
    ids = torch.tensor(token_lists, device=enc.lm.device)
    with torch.no_grad():
        h = enc.body({"ids": ids, "mask": torch.ones_like(ids)}).float().cpu()
    return h.reshape(len(token_lists), -1)


def ridge_maps(h: torch.Tensor, y: torch.Tensor, alpha: float) -> torch.Tensor:
    """argmin_A |h A - y|^2 + lam |A|^2 in dual form: A = h^T (h h^T + lam I)^-1 y."""
    h, y = h.double(), y.double()
    gram = h @ h.T
    lam = alpha * gram.diagonal().mean()
    return (h.T @ torch.linalg.solve(gram + lam * torch.eye(len(h), dtype=h.dtype), y)).float()


def main(corpus: str, template: str, out: str, alpha: float = 0.1) -> None:
    enc, _, _, blob = ckpt.load(template, device="cpu")
    cfg = blob["config"]
    n, d = max(blob["lengths"]), blob["d_model"]
    split = DataConfig(stream=StreamConfig(prose=1.0),
                       heldout_percent=cfg["data"]["heldout_percent"], seed=cfg["data"]["seed"])
    xs = [x for x in corpus_examples(corpus)
          if x.targets is not None and x.n == n and not held_out(x, split)]
    if not xs:
        sys.exit(f"error: {corpus} has no solved training texts of {n} tokens")
    state = blob["state"]
    h = features(enc, [x.token_ids for x in xs])
    y = torch.stack([torch.from_numpy(x.targets[0]) for x in xs]) - state["offset"]
    a = ridge_maps(h, y, alpha).reshape(n, d, d)
    fit = ((h @ a.reshape(n * d, -1) - y).pow(2).sum() / y.pow(2).sum()).item()
    state["pmap.A"] = torch.zeros_like(state["pmap.A"])
    state["pmap.A"][:n] = a
    blob.pop("path", None)
    blob["step"] = 0
    buf = io.BytesIO()
    torch.save(blob, buf)
    atomic_write_bytes(out, buf.getvalue())
    print(f"{out}: maps of {n} positions from {len(xs)} texts of {corpus}, alpha {alpha}, "
          f"training residual {fit:.3f} of |e* - offset|^2")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], *(float(a) for a in sys.argv[4:5]))
