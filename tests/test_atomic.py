"""Atomic writes (analyzer.atomic): complete or absent, never half; fsynced before the rename."""

from __future__ import annotations

import os
from pathlib import Path

import faiss
import numpy as np
import pytest

from analyzer import atomic
from analyzer.atomic import atomic_open, atomic_path, atomic_write_bytes
from analyzer.index import load_index, save_index
from analyzer.workspace import atomic_save_npy


def test_write_creates_folder_and_replaces_old_content(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "f.bin"
    atomic_write_bytes(target, b"one")
    atomic_write_bytes(str(target), b"two")
    assert target.read_bytes() == b"two"
    assert os.listdir(target.parent) == ["f.bin"]  # no temporary file left behind


def test_error_in_block_keeps_old_file_and_removes_temporary(tmp_path: Path) -> None:
    target = tmp_path / "f.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_open(target, "w", encoding="utf-8") as fh:
        fh.write("half of the new")
        raise RuntimeError("killed mid-write")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["f.txt"]


def test_block_that_removes_its_temporary_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "quarantine.jsonl"
    with atomic_path(target) as tmp:
        Path(tmp).write_text("nothing worth keeping")
        assert tmp.startswith(str(target) + ".tmp-")  # the name workspace recovery removes
        os.remove(tmp)
    assert not target.exists()
    assert os.listdir(tmp_path) == []


def test_file_is_fsynced_before_it_appears(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "f.bin"
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append("fsync:" + os.path.basename(os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(a: str, b: str) -> None:
        events.append("replace")
        real_replace(a, b)

    monkeypatch.setattr(atomic.os, "fsync", fsync)
    monkeypatch.setattr(atomic.os, "replace", replace)
    atomic_write_bytes(target, b"data")
    assert events[0] == f"fsync:f.bin.tmp-{os.getpid()}"
    assert events[1] == "replace"
    assert events[2] == f"fsync:{tmp_path.name}"  # the folder, so the rename itself is durable


def test_callers_round_trip(tmp_path: Path) -> None:
    arr = np.arange(12, dtype=np.float16).reshape(3, 4)
    atomic_save_npy(str(tmp_path / "a.npy"), arr)
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), arr)
    index = faiss.IndexFlatIP(4)
    index.add(np.eye(4, dtype=np.float32))
    save_index(index, str(tmp_path / "idx" / "i.faiss"))
    assert load_index(str(tmp_path / "idx" / "i.faiss")).ntotal == 4
    assert sorted(os.listdir(tmp_path)) == ["a.npy", "idx"]
