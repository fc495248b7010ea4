"""Tasks: prompts, demonstrations and rewards. ``get_task(name, **options)`` builds one by name."""

from __future__ import annotations

from typing import Any, Literal

from transformers import PreTrainedTokenizerBase

from dtm.tasks.base import PromptBatch, TokenTask
from dtm.tasks.increment import IncrementTask
from dtm.tasks.maze import MazeTask
from dtm.tasks.sudoku import SudokuTask

TASKS: dict[str, type] = {"increment": IncrementTask, "maze": MazeTask, "sudoku_digits": SudokuTask}


def get_task(name: str, **options: Any) -> TokenTask:
    """Build a registered task; unknown names list the available ones."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; available: {', '.join(sorted(TASKS))}")
    return TASKS[name](**options)


def task_names() -> list[str]:
    """Every task name: built-in token tasks and text tasks."""
    from dtm.tasks.text import TEXT_TASKS

    return sorted(set(TASKS) | set(TEXT_TASKS))


def build_task(
    name: str,
    options: dict[str, Any] | None = None,
    *,
    tokenizer: PreTrainedTokenizerBase | None = None,
    gen_length: int | None = None,
    mask_token_id: int | None = None,
    max_prompt_length: int = 0,
    truncation: Literal["error", "left"] = "error",
) -> TokenTask:
    """A token-level task by name: a built-in token task, or a text task rendered through ``tokenizer``."""
    from dtm.tasks.text import TEXT_TASKS, get_text_task
    from dtm.tasks.tokenized import TokenizedTextTask

    options = options or {}
    if name in TASKS:
        return TASKS[name](**options)
    if name not in TEXT_TASKS:
        raise ValueError(f"unknown task {name!r}; available: {', '.join(task_names())}")
    if tokenizer is None:
        raise ValueError(
            f"task {name!r} is a text task and needs a model folder with a tokenizer (the built-in model has none; "
            "its tasks are: " + ", ".join(sorted(TASKS)) + ")"
        )
    if gen_length is None or mask_token_id is None:
        raise ValueError(f"text task {name!r} needs gen_length and mask_token_id")
    text_task = get_text_task(name, **options)
    return TokenizedTextTask(text_task, tokenizer, gen_length, mask_token_id, max_prompt_length, truncation)


__all__ = ["TASKS", "PromptBatch", "TokenTask", "build_task", "get_task", "task_names"]
