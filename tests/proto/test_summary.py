"""--summary FILE: every command of the shared front writes the one-line JSON summary that ends
its stdout to FILE too, a place that a launcher's own log lines cannot push it from."""
import dataclasses

import pytest

from proto import config as C
from proto.fit.__main__ import main as fit_main

FIT = ["--model", "tiny-random", "--text", "hello", "max_steps=30"]


def test_summary_file_holds_the_last_stdout_line(tmp_path, capsys):
    target = tmp_path / "missing-dir" / "summary.json"
    rc = fit_main(FIT + ["--out", str(tmp_path / "sol.safetensors"), "--summary", str(target)])
    out = capsys.readouterr().out
    assert rc == 0
    assert target.read_text() == out.strip().splitlines()[-1] + "\n"


@pytest.mark.parametrize("where", ["a directory", "under a file"])
def test_a_summary_file_that_cannot_be_written_is_refused_first(where, tmp_path, capsys):
    (tmp_path / "plain").write_text("x")
    target = tmp_path if where == "a directory" else tmp_path / "plain" / "s.json"
    sol = tmp_path / "never.safetensors"
    rc = fit_main(FIT + ["--out", str(sol), "--summary", str(target)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("error: --summary") and len(err.splitlines()) == 1
    assert not sol.exists()


@dataclasses.dataclass
class Small:
    n: int = 1


def test_a_command_without_summary_writes_no_file_of_an_earlier_one(tmp_path, capsys):
    f = tmp_path / "s.json"
    C.parse_cli(Small, "", ["--summary", str(f)])
    C.print_summary({"n": 1})
    assert f.read_text() == '{"n": 1}\n'
    f.unlink()
    C.parse_cli(Small, "", ["n=2"])
    C.print_summary({"n": 2})
    assert not f.exists()
    assert capsys.readouterr().out.splitlines() == ['{"n": 1}', '{"n": 2}']
