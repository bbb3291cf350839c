"""Atomic files: a reader sees the old file or the new one, never a half-written one."""

import pytest

from oplearn.files import atomic_path, write_atomic


def test_write_atomic_replaces_the_file_whole(tmp_path):
    target = tmp_path / "deep" / "results.json"
    write_atomic(target, "old")
    write_atomic(target, b"new")
    assert target.read_bytes() == b"new"
    assert sorted(p.name for p in target.parent.iterdir()) == ["results.json"]  # no scratch file left


def test_a_failing_writer_leaves_the_old_file_and_no_scratch(tmp_path):
    target = tmp_path / "figure.png"
    target.write_text("old figure")
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_path(target, suffix=".png") as scratch:
            assert scratch.name == "figure.png.partial.png" and scratch.parent == tmp_path
            scratch.write_text("half a fig")
            raise RuntimeError("disk full")
    assert target.read_text() == "old figure"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["figure.png"]
