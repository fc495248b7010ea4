"""A run's output folder: checked before any work starts (not silently replaced, enough free disk, a resume that
keeps its settings) and prepared for the run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any


def check_run_dir(path: str | Path, *, resume: bool = False, overwrite: bool = False, resumable: bool = True) -> None:
    """Refuse a non-empty ``path`` unless the run resumes (kept) or overwrites it; changes nothing on disk, so a
    command checks its output folder this way before any model is loaded."""
    path = Path(path)
    if path.is_file():
        raise FileExistsError(f"output folder {path} is a file")
    if path.exists() and any(path.iterdir()) and not (resume or overwrite):
        hint = "pass --resume to continue or --overwrite to replace" if resumable else "pass --overwrite to replace it"
        raise FileExistsError(f"output folder {path} is not empty; {hint}")


# Keys that manage a run rather than define it: a resumed run may change them.
RUN_MANAGEMENT_KEYS = ("save_every", "keep_checkpoints", "eval_every", "log_with")


def check_resume_settings(cfg: Any, run_dir: str | Path) -> None:
    """A resumed run must keep the settings it was started with (``run_dir/config.yaml``); only the keys of
    ``RUN_MANAGEMENT_KEYS`` may change. Raises ValueError naming every key that differs."""
    import yaml

    from dtm.config import to_dict
    from dtm.config.loader import config_differences

    saved_file = Path(run_dir) / "config.yaml"
    if not saved_file.is_file():
        return
    saved = yaml.safe_load(saved_file.read_text(encoding="utf-8")) or {}
    given = json.loads(json.dumps(to_dict(cfg)))
    differ = config_differences(saved, given, ignore=(*RUN_MANAGEMENT_KEYS, "output_dir"))
    if differ:
        raise ValueError(
            f"cannot resume {run_dir} with other settings ({'; '.join(differ)}); resume with its own config "
            f"(dtm train --config {saved_file} output_dir={run_dir} --resume) or start over with --overwrite"
        )


def prepare_run_dir(
    path: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    min_free_bytes: int = 0,
    resumable: bool = True,
) -> Path:
    """Create ``path`` and check it is writable and has ``min_free_bytes`` of free space; a non-empty folder needs
    ``resume`` (kept) or ``overwrite``. Every problem is found here, before any training starts."""
    path = Path(path)
    check_run_dir(path, resume=resume, overwrite=overwrite, resumable=resumable)
    try:
        if overwrite and not resume and path.exists():
            shutil.rmtree(path)
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise PermissionError(f"output folder {path} is not writable: {e}") from None
    free = shutil.disk_usage(path).free
    if free < min_free_bytes:
        raise OSError(
            f"output folder {path} has {free / 1e6:.0f} MB free but this run's checkpoints need about "
            f"{min_free_bytes / 1e6:.0f} MB; free some space or choose another output_dir"
        )
    return path
