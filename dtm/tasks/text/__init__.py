"""Text tasks of the DTM paper (arXiv 2604.18739: Countdown, Sudoku, GSM8K, MATH500): data, chat prompts, answer
extraction and rewards.

``get_text_task(name, **options)`` builds one by name; see :mod:`dtm.tasks.text.base` for the shared interface and
each task's module for its data sources, prompt formats and reward formula (docs/tasks.md summarises them).
"""

from __future__ import annotations

from typing import Any

from dtm.tasks.text.base import REASONING_PREFIX, STYLES, TextExample, TextTask
from dtm.tasks.text.countdown import CountdownTask
from dtm.tasks.text.gsm8k import GSM8KTask
from dtm.tasks.text.math500 import Math500Task
from dtm.tasks.text.sudoku import SudokuTextTask

TEXT_TASKS: dict[str, type[TextTask]] = {
    "countdown": CountdownTask,
    "sudoku": SudokuTextTask,
    "gsm8k": GSM8KTask,
    "math500": Math500Task,
}


def get_text_task(name: str, **options: Any) -> TextTask:
    """Build a registered text task; unknown names list the available ones."""
    if name not in TEXT_TASKS:
        raise ValueError(f"unknown text task {name!r}; available: {', '.join(sorted(TEXT_TASKS))}")
    return TEXT_TASKS[name](**options)


__all__ = [
    "REASONING_PREFIX",
    "STYLES",
    "TEXT_TASKS",
    "CountdownTask",
    "GSM8KTask",
    "Math500Task",
    "SudokuTextTask",
    "TextExample",
    "TextTask",
    "get_text_task",
]
