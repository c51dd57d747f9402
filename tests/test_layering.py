"""The import graph of the four packages: imports only go down proto <- data_gen <- encoder <-
eval, and no modules import each other in a circle (imports inside functions included)."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ORDER = ["proto", "data_gen", "encoder", "eval"]


def _modules() -> dict[str, Path]:
    mods = {}
    for pkg in ORDER:
        for f in (ROOT / pkg).rglob("*.py"):
            parts = f.relative_to(ROOT).with_suffix("").parts
            mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return mods


def _imports(name: str, path: Path, mods: dict) -> set[str]:
    """Project modules that module `name` imports anywhere in its file."""
    pkg = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                base = ".".join(up + ([node.module] if node.module else []))
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        out |= {n for n in names if n in mods and n != name}
    return out


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    return {m: _imports(m, f, mods) for m, f in mods.items()}


def test_imports_only_go_down_the_layers():
    rank = {p: i for i, p in enumerate(ORDER)}
    up = [f"{a} imports {b}" for a, deps in _graph().items() for b in deps
          if rank[b.split(".")[0]] > rank[a.split(".")[0]]]
    assert not up, up


def test_no_modules_import_each_other_in_a_circle():
    graph, state, cycles = _graph(), {}, []

    def visit(m, stack):
        state[m] = "open"
        for d in sorted(graph[m]):
            if state.get(d) == "open":
                cycles.append(stack[stack.index(d):] + [d])
            elif d not in state:
                visit(d, stack + [d])
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not cycles, cycles[:3]


def test_the_graph_sees_relative_and_function_level_imports():
    g = _graph()
    assert "proto.onepass" in g["proto.fit"]            # from ..onepass import OnePass
    assert "proto.fit" in g["encoder.refine"]
    assert "proto.sources" in g["eval.common"]           # inside a function
