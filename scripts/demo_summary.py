"""Print `make demo`'s summary table from the JSON lines its steps saved in outputs/demo/."""
import json
import sys
from pathlib import Path


def main(root: str, seconds: str) -> None:
    d = Path(root)
    load = lambda name: json.loads((d / name).read_text())  # noqa: E731
    corpus, loc = load("corpus.json"), load("locality.json")
    print(f"corpus      {corpus['texts']} texts, {corpus['solved']} solved, "
          f"{corpus['pairs']} connectivity pairs ({corpus['corpus']})")
    print(f"locality    P(same text closer) {loc.get('p_same_text_closer')}, "
          f"P(same context closer) {loc.get('p_same_context_closer')}")
    print("\n| encoder | held-out one-pass acc | exact | kNN | optimised e | start e0 |")
    print("|---|---|---|---|---|---|")
    for loss in ("decode", "regress"):
        s = load(f"enc-{loss}.json")
        print(f"| lora, {loss} loss ({s['steps']} steps) | {s['eval/one_pass_acc']:.3f} | "
              f"{s['eval/exact_match']:.2f} | {s.get('eval/knn_acc', 0):.3f} | "
              f"{s.get('eval/optimised_acc', 0):.3f} | {s.get('eval/start_acc', 0):.3f} |")
    enc = load("encode.json")
    print(f"\nshipped encoder on configs/demo_texts.txt: one-pass accuracy "
          f"{enc['accuracy_mean']:.3f}, exact {enc['exact_match']:.2f}, {enc['seconds']} s")
    print(f"demo took {int(seconds) // 60} min {int(seconds) % 60} s")


if __name__ == "__main__":
    main(*sys.argv[1:3])
