"""Atomic checkpoint folders: write everything to a temporary sibling folder, then rename it into place.

A crash at any moment leaves either the previous checkpoint or the new one, never a half-written folder under the
final name. ``latest_checkpoint`` ignores temporary leftovers.
"""

from __future__ import annotations

import os
import random
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

TMP_PREFIX = ".tmp-"
STEP_PREFIX = "step-"


def _fsync_tree(path: Path) -> None:
    for file in path.rglob("*"):
        if file.is_file():
            with open(file, "rb") as handle:
                os.fsync(handle.fileno())
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_dir(final: Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_dir)``, then atomically move ``tmp_dir`` to ``final`` (replacing an older ``final``)."""
    final = Path(final)
    tmp = final.parent / f"{TMP_PREFIX}{final.name}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    write(tmp)
    _fsync_tree(tmp)
    if final.exists():
        old = final.parent / f"{TMP_PREFIX}old-{final.name}"
        if old.exists():
            shutil.rmtree(old)
        final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old)
    else:
        tmp.rename(final)
    return final


def checkpoint_name(step: int) -> str:
    return f"{STEP_PREFIX}{step:08d}"


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoint folders in ``run_dir``, oldest first."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    found = [p for p in run_dir.iterdir() if p.is_dir() and p.name.startswith(STEP_PREFIX)]
    return sorted(found, key=lambda p: p.name)


def latest_checkpoint(run_dir: Path) -> Path | None:
    checkpoints = list_checkpoints(run_dir)
    return checkpoints[-1] if checkpoints else None


def prune_checkpoints(run_dir: Path, keep: int) -> None:
    """Delete all but the newest ``keep`` checkpoints (``keep <= 0`` keeps all)."""
    if keep > 0:
        for old in list_checkpoints(run_dir)[:-keep]:
            doomed = old.parent / f"{TMP_PREFIX}delete-{old.name}"
            old.rename(doomed)  # a crash mid-delete must not leave a half-deleted folder under a checkpoint name
            shutil.rmtree(doomed)


def rng_state() -> dict[str, Any]:
    """Global RNG states (python, numpy, torch CPU and CUDA) for exact resumption."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
