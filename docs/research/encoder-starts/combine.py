"""Price "R steps of a recipe from the encoder's e, then from e0 with the corpus recipe" from
probe.jsonl's per-text steps: a text costs its encoder-arm steps when they are <= R, else
R + its e0-arm steps (the fallback is a fresh e0 start, whose steps the e0 arm measured).

  python docs/research/encoder-starts/combine.py docs/research/encoder-starts/probe.jsonl
"""
import json
import sys

RS = (5, 10, 15, 20, 25, 30, 40, 60, 100, 200)


def main(path):
    arms = {d["arm"]: d for d in map(json.loads, open(path))}
    base = arms.pop("e0 default")
    b = [s if s is not None else 200 for s in base["steps"]]
    print(f"e0 default: {sum(b)} row-steps ({base['solved']}/{len(b)} solved)")
    print("| encoder arm | " + " | ".join(f"R={r}" for r in RS) + " |")
    print("|---|" + "---|" * len(RS))
    for name, d in arms.items():
        cells = []
        for r in RS:
            cost = sum(s if s is not None and s <= r else r + e for s, e in zip(d["steps"], b))
            first = sum(s is not None and s <= r for s in d["steps"])
            cells.append(f"{sum(b) / cost:.2f}x ({first})")
        print(f"| {name} | " + " | ".join(cells) + " |")
    print("cell: e0 row-steps / combined row-steps (texts solved within R from the encoder)")


if __name__ == "__main__":
    main(sys.argv[1])
