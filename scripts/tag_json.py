"""Add fields to the JSON line on stdin (a command's last stdout line) and print it.

  python -m eval.bench_tail | tail -n 1 | python scripts/tag_json.py variant=lora arm=start

Research scripts use it to label each run's summary line before appending it to a .jsonl file.
Values stay strings. A stdin that is not one JSON object ends with one `error:` line, exit 2.
"""
import json
import sys


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        d = json.loads(sys.stdin.read())
        if not isinstance(d, dict):
            raise ValueError("not a JSON object")
        pairs = [a.split("=", 1) for a in argv]
        if any(len(p) != 2 for p in pairs):
            raise ValueError("arguments must be key=value")
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    d.update(dict(pairs))
    print(json.dumps(d))
    return 0


if __name__ == "__main__":
    sys.exit(main())
