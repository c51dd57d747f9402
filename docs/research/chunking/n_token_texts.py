"""Held-out texts of exactly N tokens (SmolLM2's tokenizer) for proto.fit: consecutive
windows of the paragraphs in configs/eval/paragraphs.txt (written for the tests; no training
source holds them), joined into one stream, each window kept only when its decoded text
tokenises back to the same N ids.

  python docs/research/chunking/n_token_texts.py 64 2 outputs/chunking/n64.txt
"""
import sys

from proto.models import load_model


def windows(tokenize, detok, text: str, n: int, count: int) -> list[str]:
    ids = tokenize(text)
    out = []
    for s in range(0, len(ids) - n + 1, n):
        t = detok(ids[s:s + n]).strip()
        if tokenize(t) == ids[s:s + n]:
            out.append(t)
        if len(out) == count:
            break
    return out


def main(n: int, count: int, path: str) -> None:
    lm = load_model("smollm2-135m", device="cpu", verbose=False)
    text = " ".join(open("configs/eval/paragraphs.txt").read().split())
    got = windows(lm.tokenize, lm.detokenize, text, n, count)
    if len(got) < count:
        sys.exit(f"only {len(got)} windows of {n} tokens round-trip")
    with open(path, "w") as f:
        f.write("\n".join(got) + "\n")
    print(f"{path}: {count} texts of {n} tokens")


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3])
