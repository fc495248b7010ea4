"""Tasks: prompts, demonstrations and rewards. ``get_task(name, **options)`` builds one by name."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from transformers import PreTrainedTokenizerBase

from dtm.config.loader import ConfigError, coerce_arguments
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


def checked_task_options(name: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` of task ``name`` checked like config keys before anything expensive runs: an unknown option names
    the closest one, a value of the wrong type its type, and a value a token task rejects (a range) the reason; every
    error is a ConfigError under ``task_options``. Returns the options converted to their types."""
    from dtm.tasks.text import TEXT_TASKS

    cls = TASKS.get(name) or TEXT_TASKS.get(name)
    if cls is None:
        raise ConfigError(f"task: unknown task {name!r}; available: {', '.join(task_names())}")
    checked = coerce_arguments(cls, options, "task_options.")
    if name in TASKS:
        try:
            cls(**checked)
        except ValueError as e:
            raise ConfigError(f"task_options ({name}): {e}") from None
    return checked


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


__all__ = ["TASKS", "PromptBatch", "TokenTask", "build_task", "checked_task_options", "get_task", "task_names"]
