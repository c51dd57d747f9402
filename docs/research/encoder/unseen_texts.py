"""How many texts of a build config the shipped encoder trained on (same token ids).

  python docs/research/encoder/unseen_texts.py configs/data_gen/speedup.yaml

The encoder's training texts are its corpus's texts (configs/data_gen/encoder.yaml, the
model-generated ones aside) and its raw stream (`raw_pool` windows per raw source at the
corpus's lengths, configs/encoder/default.yaml). Prints one JSON line: texts, how many of them
are training texts, by source.
"""
from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))


def main(path: str) -> int:
    from data_gen.build import BuildConfig
    from data_gen.texts import corpus_texts
    from encoder.config import EncoderConfig
    from proto import config as C
    from proto.models import load_model
    lm = load_model("smollm2-135m", device="cpu")
    ecfg = C.load(EncoderConfig, "configs/encoder/default.yaml")
    corpus = C.load(BuildConfig, "configs/data_gen/encoder.yaml")
    lengths = sorted({n for s in corpus.sources for n in s.lengths})
    raw = [dataclasses.replace(s, count=ecfg.data.raw_pool, lengths=lengths)
           for s in ecfg.data.raw]
    seen = set()
    for srcs, seed in ((raw, ecfg.data.seed),
                       ([s for s in corpus.sources if s.name != "generated"], corpus.seed)):
        texts, _ = corpus_texts(srcs, lm.tokenize, lm.detokenize, seed)
        seen |= {tuple(t.token_ids) for t in texts}
    bench = C.load(BuildConfig, path)
    texts, _ = corpus_texts(bench.sources, lm.tokenize, lm.detokenize, bench.seed)
    hits = [t for t in texts if tuple(t.token_ids) in seen]
    print(json.dumps({"config": path, "texts": len(texts), "training_texts": len(hits),
                      "by_source": {s: sum(t.source == s for t in hits)
                                    for s in sorted({t.source for t in texts})}}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
