"""Settings of ``dtm pretrain``: masked-diffusion pretraining of the built-in model on a task's demonstrations."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from dtm.config.choices import TOKEN_TASKS, MixedPrecision
from dtm.config.fields import setting
from dtm.config.loader import check
from dtm.config.model import TinyModelConfig
from dtm.config.run import check_lr_schedule


@dataclass
class PretrainConfig:
    """Settings of ``dtm pretrain``. The model's vocabulary and mask token come from the task."""

    renamed_keys: ClassVar[dict[str, str]] = {"model": "architecture", "warmup": "lr_warmup", "decay": "lr_decay"}

    task: str = setting("increment", "token task whose demonstrations are learnt: " + ", ".join(TOKEN_TASKS))
    task_options: dict[str, Any] = setting(factory=dict, help="the task's own options (e.g. maze size)")
    data_file: str | None = setting(
        None, "JSONL file of {prompt, response} token-id lists to learn instead of the task's own demonstrations"
    )
    num_examples: int = setting(20000, "demonstrations drawn from the task (without data_file)")
    architecture: TinyModelConfig = setting(factory=TinyModelConfig, help="shape of the built-in model")
    steps: int = setting(1500, "optimizer steps")
    batch_size: int = setting(64, "examples per optimizer step")
    lr: float = setting(3e-3, "peak learning rate (AdamW)")
    lr_min: float = setting(3e-4, "learning rate at the end of the decay")
    lr_warmup: float = setting(0.05, "fraction of the steps with linear warmup")
    lr_decay: float = setting(0.5, "fraction of the steps with linear decay to lr_min")
    weight_decay: float = setting(0.01, "AdamW weight decay")
    grad_clip: float = setting(1.0, "gradient norm clip")
    seed: int = setting(0, "seed of the data, the initialisation and the masking")
    output_dir: str = setting("runs/pretrain", "run folder: config, metrics.jsonl and the model (in model/)")
    log_every: int = setting(10, "write the loss to metrics.jsonl every this many steps")
    mixed_precision: MixedPrecision = setting("no", "autocast precision of forward passes (GPU)")
    gradient_checkpointing: bool = setting(False, "recompute activations in the backward pass to save memory")

    def __post_init__(self) -> None:
        check(self.task in TOKEN_TASKS, "task", f"must be a token task ({', '.join(TOKEN_TASKS)}), got {self.task!r}")
        check(self.steps > 0, "steps", f"must be positive, got {self.steps}")
        check(self.batch_size > 0, "batch_size", f"must be positive, got {self.batch_size}")
        check(self.num_examples > 0, "num_examples", f"must be positive, got {self.num_examples}")
        check_lr_schedule(self.lr, self.lr_min, self.lr_warmup, self.lr_decay)
        check(self.grad_clip > 0, "grad_clip", f"must be positive, got {self.grad_clip}")
        check(self.log_every > 0, "log_every", f"must be positive, got {self.log_every}")
