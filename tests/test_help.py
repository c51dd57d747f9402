"""Every command's --help prints its module docstring verbatim (RawDescriptionHelpFormatter):
a `\\` at the end of a docstring line is a Python line continuation that joins the example with
the next line's indentation, so help shows `... demo_texts.txt       --out ...`."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted(p for d in ("proto", "data_gen", "encoder", "eval", "scripts", "docs")
                 for p in (ROOT / d).rglob("*.py"))


def docstring_node(path: Path):
    body = ast.parse(path.read_text(encoding="utf-8")).body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str):
        return body[0].value
    return None


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_help_lines_are_the_docstring_lines(path):
    node = docstring_node(path)
    if node is None:
        pytest.skip("no module docstring")
    written = node.end_lineno - node.lineno + 1
    shown = node.value.count("\n") + 1
    assert shown == written, (f"{written - shown} docstring line(s) joined into the next one in "
                              f"help: end the line with `\\\\` to show a shell continuation")


def test_encode_help_shows_its_example_on_two_lines(capsys):
    from encoder import encode
    with pytest.raises(SystemExit):
        encode.main(["--help"])
    out = capsys.readouterr().out
    assert "configs/demo_texts.txt \\\n      --out" in out
