"""Atomic, verifiable checkpoint folders: write everything to a temporary sibling folder with a manifest of its files,
then rename it into place.

A crash at any moment leaves either the previous checkpoint or the new one, never a half-written folder under the
final name. ``latest_checkpoint`` ignores temporary leftovers. The manifest (``manifest.json``) records each file's size
and SHA-256, so a checkpoint damaged later (a truncated copy, a flipped bit on disk) is found before it is loaded:
:func:`set_aside_damaged` moves the newest damaged checkpoints out of the way, with a warning, so that resuming falls
back to the newest intact one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

TMP_PREFIX = ".tmp-"
DAMAGED_PREFIX = ".damaged-"
STEP_PREFIX = "step-"
MANIFEST = "manifest.json"
logger = logging.getLogger(__name__)


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def write_manifest(folder: Path) -> None:
    """Record the size and SHA-256 of every file under ``folder`` in ``folder/manifest.json``."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST)
    entries = {p.relative_to(folder).as_posix(): {"bytes": p.stat().st_size, "sha256": _sha256(p)} for p in files}
    (folder / MANIFEST).write_text(json.dumps({"files": entries}, indent=2))


def damage(folder: Path) -> str | None:
    """What is wrong with a checkpoint folder by its manifest (a missing, truncated or altered file, an unreadable
    manifest), or None if every file matches. A folder without a manifest (written before manifests existed) passes
    unchecked."""
    manifest = folder / MANIFEST
    if not manifest.is_file():
        return None
    try:
        entries = json.loads(manifest.read_text())["files"]
        for name, entry in entries.items():
            path = folder / name
            if not path.is_file():
                return f"{name} is missing"
            size = path.stat().st_size
            if size != entry["bytes"]:
                return f"{name} has {size} bytes, {entry['bytes']} when saved"
            if _sha256(path) != entry["sha256"]:
                return f"{name} does not match its checksum"
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        return f"its manifest cannot be read ({e})"
    return None


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
    write_manifest(tmp)
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


def set_aside_damaged(run_dir: Path) -> list[Path]:
    """Check checkpoints newest first until an intact one; rename each damaged one to ``.damaged-step-XXXXXXXX`` (kept
    for inspection, ignored by :func:`list_checkpoints`) with a warning. Returns the new paths of those set aside."""
    moved = []
    for folder in reversed(list_checkpoints(run_dir)):
        problem = damage(folder)
        if problem is None:
            break
        target = folder.parent / f"{DAMAGED_PREFIX}{folder.name}"
        if target.exists():
            shutil.rmtree(target)
        folder.rename(target)
        moved.append(target)
        logger.warning("checkpoint %s is damaged (%s); set aside as %s", folder, problem, target.name)
    return moved


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
