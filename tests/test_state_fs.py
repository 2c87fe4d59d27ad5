"""pikku_typing._fs: the one atomic file write."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pikku_typing._fs import atomic_write_bytes, atomic_write_text, is_temp_name


def test_replaces_content_and_keeps_the_mode(tmp_path: Path) -> None:
    target = tmp_path / "doc.json"
    atomic_write_bytes(target, b"one", fsync=True)
    assert target.read_bytes() == b"one"
    os.chmod(target, 0o600)
    atomic_write_text(target, "twø")
    assert target.read_text(encoding="utf-8") == "twø"
    assert target.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["doc.json"]


def test_make_parents_and_no_temp_left_on_failure(tmp_path: Path) -> None:
    nested = tmp_path / "a" / "b" / "c.txt"
    with pytest.raises(FileNotFoundError):
        atomic_write_bytes(nested, b"x")
    atomic_write_bytes(nested, b"x", make_parents=True)
    assert nested.read_bytes() == b"x"
    # the destination is a directory: the replace fails, the temp file goes
    blocker = tmp_path / "a" / "dir"
    (blocker / "inside").mkdir(parents=True)
    with pytest.raises(OSError):
        atomic_write_bytes(blocker, b"y")
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["b", "dir"]


def test_temp_names() -> None:
    assert is_temp_name(".doc.json.0123abcd.tmp")
    assert not is_temp_name("doc.json")
