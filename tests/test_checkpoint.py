"""Atomic checkpoint folders, their manifests (damage detection) and RNG state capture."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from dtm.training import checkpoint as ckpt


def write_files(content: str):
    def write(folder):
        (folder / "a.txt").write_text(content)
        (folder / "b.txt").write_text(content * 2)

    return write


def test_atomic_write_creates_and_replaces(tmp_path):
    final = tmp_path / ckpt.checkpoint_name(5)
    ckpt.atomic_write_dir(final, write_files("one"))
    assert (final / "a.txt").read_text() == "one"
    ckpt.atomic_write_dir(final, write_files("two"))
    assert (final / "b.txt").read_text() == "twotwo"
    assert sorted(p.name for p in tmp_path.iterdir()) == [final.name]


def test_crash_while_writing_keeps_the_last_good_checkpoint(tmp_path):
    good = ckpt.atomic_write_dir(tmp_path / ckpt.checkpoint_name(1), write_files("good"))

    def crash(folder):
        (folder / "a.txt").write_text("partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ckpt.atomic_write_dir(tmp_path / ckpt.checkpoint_name(2), crash)
    assert ckpt.latest_checkpoint(tmp_path) == good
    assert (good / "a.txt").read_text() == "good"
    # The next save cleans the leftover temporary folder.
    ckpt.atomic_write_dir(tmp_path / ckpt.checkpoint_name(2), write_files("new"))
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == [ckpt.checkpoint_name(1), ckpt.checkpoint_name(2)]
    assert not any(p.name.startswith(ckpt.TMP_PREFIX) for p in tmp_path.iterdir())


def test_prune_keeps_newest(tmp_path):
    for step in (3, 10, 7, 1):
        ckpt.atomic_write_dir(tmp_path / ckpt.checkpoint_name(step), write_files(str(step)))
    ckpt.prune_checkpoints(tmp_path, keep=2)
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == [ckpt.checkpoint_name(7), ckpt.checkpoint_name(10)]
    ckpt.prune_checkpoints(tmp_path, keep=0)
    assert len(ckpt.list_checkpoints(tmp_path)) == 2


def test_manifest_finds_missing_truncated_and_altered_files(tmp_path):
    folder = ckpt.atomic_write_dir(tmp_path / ckpt.checkpoint_name(1), write_files("abc"))
    manifest = json.loads((folder / ckpt.MANIFEST).read_text())["files"]
    assert manifest["a.txt"]["bytes"] == 3 and manifest["b.txt"]["bytes"] == 6
    assert ckpt.damage(folder) is None
    (folder / "a.txt").write_text("ab")
    assert ckpt.damage(folder) == "a.txt has 2 bytes, 3 when saved"
    (folder / "a.txt").write_text("abd")  # same size, other content
    assert ckpt.damage(folder) == "a.txt does not match its checksum"
    (folder / "a.txt").unlink()
    assert ckpt.damage(folder) == "a.txt is missing"
    (folder / ckpt.MANIFEST).write_text('{"files": ')
    assert ckpt.damage(folder).startswith("its manifest cannot be read")
    (folder / ckpt.MANIFEST).unlink()
    assert ckpt.damage(folder) is None  # written before manifests existed: not checked


def test_damaged_checkpoints_are_set_aside_down_to_the_newest_intact_one(tmp_path):
    for step in (1, 2, 3, 4):
        ckpt.atomic_write_dir(tmp_path / ckpt.checkpoint_name(step), write_files(str(step)))
    for step in (1, 3, 4):
        (tmp_path / ckpt.checkpoint_name(step) / "b.txt").write_text("x")
    moved = ckpt.set_aside_damaged(tmp_path)
    assert [p.name for p in moved] == [".damaged-step-00000004", ".damaged-step-00000003"]
    assert ckpt.latest_checkpoint(tmp_path) == tmp_path / ckpt.checkpoint_name(2)
    assert len(ckpt.list_checkpoints(tmp_path)) == 2  # the older damaged one is not checked until it is needed


def test_latest_checkpoint_of_missing_folder_is_none(tmp_path):
    assert ckpt.latest_checkpoint(tmp_path / "nope") is None


def test_rng_state_round_trip():
    state = ckpt.rng_state()
    first = (random.random(), np.random.rand(), torch.rand(3))
    ckpt.set_rng_state(state)
    second = (random.random(), np.random.rand(), torch.rand(3))
    assert first[0] == second[0] and first[1] == second[1]
    torch.testing.assert_close(first[2], second[2])
