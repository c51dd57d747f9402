"""The README's quick start, run as written: every command of its `# quick start` block, in a
clean copy of the repository, as a user would type it after `source .venv/bin/activate`. A
README line that stops being true (a flag renamed, a config moved, a file not written where it
says) fails here, and so does a command that leaves files `git status` shows."""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEADER = "# quick start"


def quick_start(readme: str) -> list[str]:
    """The commands of the README's fenced block that opens with the quick-start comment."""
    blocks = re.findall(r"^```[^\n]*\n(.*?)^```", readme, re.M | re.S)
    found = [b for b in blocks if b.startswith(HEADER)]
    assert len(found) == 1, f"README.md needs one fenced block opening with {HEADER!r}"
    return [ln for ln in found[0].splitlines() if ln.strip() and not ln.startswith("#")]


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd,
                          capture_output=True, text=True, check=True).stdout


def clean_clone(dst: Path) -> Path:
    """The working tree's tracked files, committed in a fresh repository (a clean clone of
    what is being tested, uncommitted edits included)."""
    for name in git(ROOT, "ls-files", "-z").split("\0"):
        src = ROOT / name
        if name and src.is_file():
            (dst / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / name)
    git(dst, "init", "-q")
    git(dst, "add", "-f", ".")
    git(dst, "commit", "-q", "-m", "clone")
    return dst


def user_env(tmp: Path) -> dict:
    """A user's shell: the venv first on PATH, MLflow on (its store in the working directory),
    the model cache out of the user's."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PROTOSPACE_NO_MLFLOW", "MLFLOW_TRACKING_URI", "PYTHONPATH")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PROTOSPACE_CACHE"] = str(tmp / "cache")
    return env


def test_the_quick_start_runs_as_written_and_leaves_git_status_clean(tmp_path):
    cmds = quick_start((ROOT / "README.md").read_text(encoding="utf-8"))
    assert cmds
    repo = clean_clone(tmp_path / "clone")
    assert not git(repo, "ls-files", "-ci", "--exclude-standard"), "tracked files are ignored"
    env = user_env(tmp_path)
    for cmd in cmds:
        p = subprocess.run(cmd, shell=True, cwd=repo, env=env, capture_output=True, text=True,
                           timeout=300)
        assert p.returncode == 0, f"{cmd}\n{p.stderr[-2000:]}"
        json.loads(p.stdout.strip().splitlines()[-1])   # the last stdout line is the summary
    assert (repo / "mlflow.db").exists() and (repo / "mlartifacts").is_dir()
    assert git(repo, "status", "--porcelain") == "", "the commands wrote files git status shows"
