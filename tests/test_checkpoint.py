"""Atomic checkpoint folders and RNG state capture."""

from __future__ import annotations

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


def test_latest_checkpoint_of_missing_folder_is_none(tmp_path):
    assert ckpt.latest_checkpoint(tmp_path / "nope") is None


def test_rng_state_round_trip():
    state = ckpt.rng_state()
    first = (random.random(), np.random.rand(), torch.rand(3))
    ckpt.set_rng_state(state)
    second = (random.random(), np.random.rand(), torch.rand(3))
    assert first[0] == second[0] and first[1] == second[1]
    torch.testing.assert_close(first[2], second[2])
