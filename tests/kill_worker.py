"""Worker for tests/test_kill.py: ``dtm train`` that SIGKILLs itself at one chosen moment of its run.

Usage: python tests/kill_worker.py MOMENT N TRAIN_ARGS...

The process kills itself at the N-th time (counted from its start) that it reaches MOMENT:

- ``step``: an optimizer step has been applied, before its metrics line and checkpoint;
- ``log``: half of a metrics line is on disk (a torn line);
- ``weights``: a weight file of a checkpoint is written, the rest of that checkpoint not yet;
- ``state``: the optimizer state or the run state of a checkpoint is written (``torch.save``);
- ``synced``: a new checkpoint is complete and synced in its temporary folder, not yet renamed into place;
- ``prune``: an old checkpoint is renamed for deletion, not yet deleted.

Killing at a counted moment instead of after a random delay makes every run of the test hit the same moments, so the
test passes or fails the same way on a fast machine and on a loaded one.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import sys
from collections.abc import Callable
from typing import Any

import torch

from dtm.cli import main
from dtm.training import checkpoint, trainer
from dtm.training.logging import MetricsLog

MOMENTS = ("step", "log", "weights", "state", "synced", "prune")


def install(moment: str, n: int) -> None:
    """Wrap the functions that mark each moment so that the ``n``-th time ``moment`` is reached kills the process."""
    if moment not in MOMENTS:
        raise ValueError(f"unknown moment {moment!r}; one of {MOMENTS}")
    seen = 0

    def reached(name: str) -> bool:
        nonlocal seen
        if name == moment:
            seen += 1
        return name == moment and seen == n

    def kill() -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    def after(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            result = fn(*args, **kwargs)
            if reached(name):
                kill()
            return result

        return wrapped

    write_log = MetricsLog.write

    def torn_write(self: MetricsLog, record: dict[str, Any]) -> None:
        if self.enabled and reached("log"):
            line = json.dumps(record) + "\n"
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(line[: len(line) // 2])
            kill()
        write_log(self, record)

    rmtree = shutil.rmtree

    def prune_rmtree(path: Any, *args: Any, **kwargs: Any) -> None:
        if "delete-" in os.path.basename(path) and reached("prune"):
            kill()
        rmtree(path, *args, **kwargs)

    trainer.Trainer._apply_gradients = after("step", trainer.Trainer._apply_gradients)
    MetricsLog.write = torn_write
    trainer.save_file = after("weights", trainer.save_file)
    torch.save = after("state", torch.save)
    checkpoint._fsync_tree = after("synced", checkpoint._fsync_tree)
    shutil.rmtree = prune_rmtree


if __name__ == "__main__":
    install(sys.argv[1], int(sys.argv[2]))
    main(sys.argv[3:])
