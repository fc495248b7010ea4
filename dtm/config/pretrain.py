"""Settings of ``dtm pretrain``: masked-diffusion pretraining of the built-in model on a task's demonstrations."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from dtm.config.choices import TOKEN_TASKS, MixedPrecision
from dtm.config.fields import setting
from dtm.config.loader import check
from dtm.config.model import TinyModelConfig
from dtm.config.optimizer import OptimizerSettings, optimizer_default


@dataclass
class PretrainConfig(OptimizerSettings):
    """Settings of ``dtm pretrain``. The model's vocabulary and mask token come from the task."""

    renamed_keys: ClassVar[dict[str, str]] = OptimizerSettings.renamed_keys | {"model": "architecture"}

    task: str = setting("increment", "token task whose demonstrations are learnt: " + ", ".join(TOKEN_TASKS))
    task_options: dict[str, Any] = setting(factory=dict, help="the task's own options (e.g. maze size)")
    data_file: str | None = setting(
        None, "JSONL file of {prompt, response} token-id lists to learn instead of the task's own demonstrations"
    )
    num_examples: int = setting(20000, "demonstrations drawn from the task (without data_file)")
    architecture: TinyModelConfig = setting(factory=TinyModelConfig, help="shape of the built-in model")
    steps: int = setting(1500, "optimizer steps")
    batch_size: int = setting(64, "examples per optimizer step")
    lr: float = optimizer_default("lr", 3e-3)
    lr_min: float = optimizer_default("lr_min", 3e-4)
    lr_decay: float = optimizer_default("lr_decay", 0.5)
    seed: int = setting(0, "seed of the data, the initialisation and the masking")
    output_dir: str = setting("runs/pretrain", "run folder: config, metrics.jsonl and the model (in model/)")
    log_every: int = setting(10, "write the loss to metrics.jsonl every this many steps")
    mixed_precision: MixedPrecision = setting("no", "autocast precision of forward passes (GPU)")
    gradient_checkpointing: bool = setting(False, "recompute activations in the backward pass to save memory")

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.task in TOKEN_TASKS, "task", f"must be a token task ({', '.join(TOKEN_TASKS)}), got {self.task!r}")
        check(self.steps > 0, "steps", f"must be positive, got {self.steps}")
        check(self.batch_size > 0, "batch_size", f"must be positive, got {self.batch_size}")
        check(self.num_examples > 0, "num_examples", f"must be positive, got {self.num_examples}")
        check(self.log_every > 0, "log_every", f"must be positive, got {self.log_every}")
