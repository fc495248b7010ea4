"""Tasks: prompts, demonstrations and rewards. ``get_task(name, **options)`` builds one by name."""

from __future__ import annotations

from typing import Any

from dtm.tasks.base import PromptBatch, TokenTask
from dtm.tasks.increment import IncrementTask
from dtm.tasks.maze import MazeTask

TASKS: dict[str, type] = {"increment": IncrementTask, "maze": MazeTask}


def get_task(name: str, **options: Any) -> TokenTask:
    """Build a registered task; unknown names list the available ones."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; available: {', '.join(sorted(TASKS))}")
    return TASKS[name](**options)


__all__ = ["TASKS", "PromptBatch", "TokenTask", "get_task"]
