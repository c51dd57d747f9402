import dataclasses
from pathlib import Path

import pytest

from proto import config as C


@dataclasses.dataclass
class Inner:
    lr: float = 0.01
    name: str = "x"

    def __post_init__(self):
        if self.lr <= 0:
            raise ValueError("lr must be positive")


@dataclasses.dataclass
class Outer:
    inner: Inner = dataclasses.field(default_factory=Inner)
    steps: int = 10
    lengths: list[int] = dataclasses.field(default_factory=lambda: [1])
    flag: bool = False


def test_defaults_yaml_then_overrides(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("steps: 20\ninner: {lr: 0.5}\n")
    cfg = C.load(Outer, p, ["inner.name=y", "lengths=[4, 8]", "flag=true"])
    assert cfg == Outer(Inner(0.5, "y"), 20, [4, 8], True)


@pytest.mark.parametrize("bad,msg", [
    (["nope=1"], "unknown key"), (["inner.nope=1"], "unknown key"),
    (["steps=abc"], "expected an integer"), (["inner.lr=-1"], "lr must be positive"),
    (["flag=3"], "true/false"), (["steps"], "key=value"),
])
def test_bad_values_are_one_line_errors(bad, msg):
    with pytest.raises(C.ConfigError, match=msg):
        C.load(Outer, None, bad)


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(C.ConfigError, match="not found"):
        C.load(Outer, tmp_path / "missing.yaml")
    bad = tmp_path / "b.yaml"
    bad.write_text("a: [1,\n")
    with pytest.raises(C.ConfigError, match="not valid YAML"):
        C.load(Outer, bad)


def test_every_shipped_yaml_parses_into_its_config():
    """Each configs/<pkg>/*.yaml must load into the dataclass of its command."""
    from eval.recipes import RecipesConfig
    from proto.fit.__main__ import FitConfig
    owners = {"eval/recipes.yaml": RecipesConfig, "proto/fit.yaml": FitConfig}
    root = Path(__file__).resolve().parents[2] / "configs"
    found = 0
    for rel, cls in owners.items():
        if (root / rel).exists():
            C.load(cls, root / rel)
            found += 1
    assert found == len(owners)


def test_parse_cli_returns_config_or_none_with_one_error_line(capsys, tmp_path):
    cfg = C.parse_cli(Outer, "doc", ["steps=3", "inner.lr=0.2"])
    assert cfg == Outer(Inner(0.2, "x"), 3)
    # overrides may sit on both sides of a path flag
    (tmp_path / "c.yaml").write_text("flag: true\n")
    cfg = C.parse_cli(Outer, "doc", ["steps=3", "--config", str(tmp_path / "c.yaml"),
                                     "inner.lr=0.2"])
    assert cfg == Outer(Inner(0.2, "x"), 3, flag=True)
    assert C.parse_cli(Outer, "doc", ["nope=1"]) is None
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "unknown key" in err[0]


def test_command_front_flags_lists_and_positionals(capsys):
    """parse_cli: a path flag is taken verbatim (dash or underscore spelling), a flag of a
    typed field is read as YAML, a list flag repeats, a positional field comes first, and
    key=value overrides may follow any of them."""
    import dataclasses

    from proto import config as C

    @dataclasses.dataclass
    class Cfg:
        solution: str = ""
        texts_file: str = ""
        restarts: int = 1
        text: list[str] = dataclasses.field(default_factory=list)
        lr: float = 0.1

    cfg = C.parse_cli(Cfg, "doc", ["sol.st", "--texts-file", "a=b.txt", "--restarts", "3",
                                   "--text", "x", "--text", "y: z", "lr=3e-3"],
                      paths={"texts_file": "", "restarts": ""}, lists={"text": ""},
                      positional={"solution": ""})
    assert cfg == Cfg("sol.st", "a=b.txt", 3, ["x", "y: z"], 3e-3)
    assert C.parse_cli(Cfg, "doc", ["s", "--restarts", "two"], paths={"restarts": ""},
                       positional={"solution": ""}) is None
    assert "expected an integer" in capsys.readouterr().err


def test_progress_is_quiet_off_a_terminal_and_on_other_ranks(monkeypatch):
    from proto import progress as P
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("PROTOSPACE_PROGRESS", "1")
    monkeypatch.setenv("RANK", "0")
    assert P.enabled()
    monkeypatch.setenv("RANK", "1")
    assert not P.enabled()
    monkeypatch.setenv("RANK", "0")
    monkeypatch.delenv("PROTOSPACE_PROGRESS")
    monkeypatch.setenv("CI", "true")
    assert not P.enabled() and P.bar(10).disable


def test_an_unknown_start_provider_is_one_clear_error():
    import pytest

    from proto.providers import text_starts
    with pytest.raises(ValueError, match="no start provider 'nope'"):
        text_starts("default", None, [[1, 2]], provider="nope")
