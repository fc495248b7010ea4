"""Settings of the small commands: ``dtm sample`` (decode a few test prompts) and ``dtm demo``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dtm.config.choices import TASK_NAMES, TOKEN_TASKS, KVCache, Remasking, Split
from dtm.config.fields import setting
from dtm.config.loader import check
from dtm.config.sampling import CACHE_HELP, CACHE_REFRESH_HELP, THRESHOLD_HELP


@dataclass
class SampleConfig:
    """``dtm sample``: decode ``n`` prompts of a task with a saved model and print them with their rewards. The
    response length is the task's."""

    model: str = setting("", "model folder to sample from")
    task: str = setting("increment", "task whose prompts are decoded: " + ", ".join(TOKEN_TASKS))
    task_options: dict[str, Any] = setting(
        factory=dict, help="the task's own options; must match the model's training (e.g. maze size)"
    )
    n: int = setting(8, "prompts decoded")
    split: Split = setting("test", "split the prompts come from")
    block_length: int = setting(4, "SAR block length; must divide the task's response length")
    decode_steps: int = setting(8, "decoding rounds over the whole response")
    temperature: float = setting(1.0, "sampling temperature (0 = greedy)")
    remasking: Remasking = setting("low_confidence", "which masked positions a round fills")
    threshold: float | None = setting(None, THRESHOLD_HELP)
    cache: KVCache = setting("none", CACHE_HELP)
    cache_refresh: int = setting(0, CACHE_REFRESH_HELP)
    seed: int = setting(0, "seed of the prompt draw and of sampling")

    def __post_init__(self) -> None:
        check(bool(self.model), "model", "give the model folder to sample from")
        check(
            self.task in TOKEN_TASKS,
            "task",
            f"unknown task {self.task!r}; available: {', '.join(TOKEN_TASKS)}"
            if self.task not in TASK_NAMES
            else f"{self.task} is a text task; dtm sample decodes token tasks ({', '.join(TOKEN_TASKS)})",
        )
        check(self.n > 0, "n", f"must be positive, got {self.n}")


@dataclass
class DemoConfig:
    """``dtm demo``: pretrain the built-in model on the increment task, tilt it with DTM, and compare the result with
    the exact tilted target (known in closed form for this task)."""

    output_dir: str = setting("runs/demo", "demo folder (replaced on every run): pretrain/, dtm/, results.json")
    quick: bool = setting(False, "a much shorter run (a smoke test, not a result)")
    seed: int = setting(0, "seed of pretraining, DTM and the measurements")
