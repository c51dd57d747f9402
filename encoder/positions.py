"""Where one-pass decoding of predicted e's fails: by position in the text and by how often
the token occurs in the training texts (`encoder.evaluate` reports it for the encoder and the
kNN baseline; plots in positions.png)."""
from __future__ import annotations

from collections import Counter

import torch

# token-frequency buckets over the training texts: (label, lowest count, highest count)
FREQ_BUCKETS = (("unseen", 0, 0), ("1-2", 1, 2), ("3-20", 3, 20), (">20", 21, 10 ** 12))


@torch.no_grad()
def token_hits(decoder, e: torch.Tensor, m, token_lists: list[list[int]],
               batch_size: int = 64) -> list[list[bool]]:
    """Per text, whether each position decodes to its token in one pass."""
    out = []
    for s in range(0, len(token_lists), batch_size):
        part = token_lists[s: s + batch_size]
        tgt, _ = decoder.targets(part)
        pred = decoder.logits(e[s: s + batch_size].to(decoder.lm.device), m,
                              tgt.shape[1]).argmax(-1)
        ok = (pred == tgt).cpu().tolist()
        out += [row[: len(t)] for row, t in zip(ok, part)]
    return out


def breakdown(hits: list[list[bool]], token_lists: list[list[int]],
              counts: Counter | None) -> dict:
    """{'by_position': {N: [acc at position 0..N-1]}, 'by_frequency': {bucket: {acc, tokens}}};
    no 'by_frequency' when the training counts are unknown (None)."""
    by_len: dict[int, list[list[bool]]] = {}
    for h in hits:
        by_len.setdefault(len(h), []).append(h)
    pos = {str(n): [sum(h[i] for h in hs) / len(hs) for i in range(n)]
           for n, hs in sorted(by_len.items())}
    if counts is None:
        return {"by_position": pos}
    freq = {}
    for label, lo, hi in FREQ_BUCKETS:
        cells = [ok for h, t in zip(hits, token_lists) for ok, tok in zip(h, t)
                 if lo <= counts.get(tok, 0) <= hi]
        freq[label] = {"acc": sum(cells) / len(cells) if cells else None, "tokens": len(cells)}
    return {"by_position": pos, "by_frequency": freq}


def plot(res: dict):
    """Accuracy per position (one panel per length) and per frequency bucket, per method."""
    import matplotlib.pyplot as plt  # lazy: matplotlib (~1 s) is needed only to draw plots
    lengths = sorted({int(n) for r in res.values() for n in r["by_position"]})
    freq = all("by_frequency" in r for r in res.values())
    panels = len(lengths) + freq
    fig, axes = plt.subplots(1, panels, figsize=(4.2 * panels, 3.6), squeeze=False)
    for ax, n in zip(axes[0], lengths):
        for method, r in res.items():
            acc = r["by_position"].get(str(n))
            if acc:
                ax.plot(range(1, n + 1), acc, "o-", ms=3, label=method)
        ax.set_title(f"N={n}: accuracy per position", fontsize=9)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_xlabel("position")
        ax.set_ylim(-0.02, 1.02)
        ax.legend(fontsize=7)
    if freq:
        _frequency_panel(axes[0][-1], res)
    fig.tight_layout()
    return fig


def _frequency_panel(ax, res: dict):
    labels = [b[0] for b in FREQ_BUCKETS]
    width = 0.8 / max(1, len(res))
    for j, (method, r) in enumerate(res.items()):
        vals = [r["by_frequency"][b]["acc"] or 0.0 for b in labels]
        ax.bar([i + j * width for i in range(len(labels))], vals, width, label=method)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(labels))], labels)
    ax.set_xlabel("token's count in the training texts")
    ax.set_title("accuracy by token frequency", fontsize=9)
    ax.legend(fontsize=7)
