"""proto.io: atomic writes leave the old file or the new one, and no temp files behind."""
import json

import pytest

from proto.io import atomic_path, atomic_write_bytes, atomic_write_json


def test_atomic_path_replaces_the_target_on_success(tmp_path):
    target = tmp_path / "sub" / "index.bin"                     # parent created on demand
    with atomic_path(target) as tmp:
        assert isinstance(tmp, str)
        assert tmp.startswith(str(target.parent)) and tmp.endswith(".tmp")
        assert ".index.bin." in tmp                            # hidden, beside the target
        assert not target.exists()                              # nothing there until the end
        with open(tmp, "wb") as f:
            f.write(b"new")
    assert target.read_bytes() == b"new"
    assert [p.name for p in target.parent.iterdir()] == ["index.bin"]


def test_atomic_path_keeps_the_old_file_and_removes_the_temp_on_failure(tmp_path):
    target = tmp_path / "t.txt"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="writer failed"):
        with atomic_path(target) as tmp:
            with open(tmp, "wb") as f:
                f.write(b"half")
            raise RuntimeError("writer failed")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["t.txt"]


def test_atomic_path_failure_without_a_target_leaves_nothing(tmp_path):
    with pytest.raises(KeyboardInterrupt):                      # BaseException too
        with atomic_path(tmp_path / "t.txt"):
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_bytes_and_json(tmp_path):
    p = atomic_write_bytes(tmp_path / "a" / "b.bin", b"xyz")
    assert p == tmp_path / "a" / "b.bin" and p.read_bytes() == b"xyz"
    atomic_write_bytes(p, b"second")
    assert p.read_bytes() == b"second"
    j = atomic_write_json(tmp_path / "r.json", {"x": 1, "p": tmp_path})
    assert json.loads(j.read_text()) == {"x": 1, "p": str(tmp_path)}
    assert sorted(q.name for q in tmp_path.iterdir()) == ["a", "r.json"]
