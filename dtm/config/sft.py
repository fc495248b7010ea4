"""Settings of ``dtm sft``: masked-diffusion supervised fine-tuning of a model folder on text tasks' demonstrations."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from dtm.config.choices import TEXT_TASKS, MixedPrecision
from dtm.config.fields import setting
from dtm.config.loader import check
from dtm.config.model import LoadOptions
from dtm.config.optimizer import OptimizerSettings, optimizer_default


@dataclass
class SFTConfig(OptimizerSettings):
    """Settings of ``dtm sft``: the model folder (with a tokenizer and a mask token, e.g. made by ``dtm convert``)
    learns, with the masked-diffusion loss, to fill in demonstrations of text tasks rendered by its chat template."""

    renamed_keys: ClassVar[dict[str, str]] = OptimizerSettings.renamed_keys | {"model": "load"}

    base_model: str = setting("", "model folder to fine-tune: weights, config with a mask token, tokenizer")
    load: LoadOptions = setting(factory=LoadOptions, help="how base_model is loaded")
    tasks: dict[str, dict[str, Any]] = setting(
        factory=lambda: {"countdown": {"source": "generate"}},
        help="text tasks whose train-split demonstrations are learnt, each with its task_options "
        "(e.g. {countdown: {style: chat, source: generate}}); the examples of all tasks are mixed",
    )
    examples_per_task: int = setting(1000, "train examples drawn from each task")
    response_length: int = setting(
        64, "response length in tokens: a demonstration and its end of turn, padded with EOS; longer ones are left out"
    )
    max_prompt_length: int = setting(0, "longest prompt in tokens (0 = no limit); a longer prompt is an error")
    steps: int = setting(100, "optimizer steps")
    batch_size: int = setting(8, "examples per optimizer step")
    lr: float = optimizer_default("lr", 1e-4)
    lr_min: float = optimizer_default("lr_min", 1e-5)
    lr_warmup: float = optimizer_default("lr_warmup", 0.1)
    lr_decay: float = optimizer_default("lr_decay", 0.9)
    weight_decay: float = optimizer_default("weight_decay", 0.0)
    seed: int = setting(0, "seed of the data draw, the example order and the masking")
    output_dir: str = setting("runs/sft", "run folder: config, data summary, metrics.jsonl and the model (in model/)")
    log_every: int = setting(1, "write the loss to metrics.jsonl every this many steps")
    mixed_precision: MixedPrecision = setting("no", "autocast precision of forward passes (GPU)")
    gradient_checkpointing: bool = setting(False, "recompute activations in the backward pass to save memory")

    def __post_init__(self) -> None:
        super().__post_init__()
        check(bool(self.base_model), "base_model", "give the model folder to fine-tune")
        check(bool(self.tasks), "tasks", "give at least one text task")
        for name in self.tasks:
            check(name in TEXT_TASKS, "tasks", f"{name!r} is not a text task ({', '.join(TEXT_TASKS)})")
        check(self.examples_per_task > 0, "examples_per_task", f"must be positive, got {self.examples_per_task}")
        check(self.response_length > 0, "response_length", f"must be positive, got {self.response_length}")
        check(self.max_prompt_length >= 0, "max_prompt_length", f"must be >= 0, got {self.max_prompt_length}")
        check(self.steps > 0, "steps", f"must be positive, got {self.steps}")
        check(self.batch_size > 0, "batch_size", f"must be positive, got {self.batch_size}")
        check(self.log_every > 0, "log_every", f"must be positive, got {self.log_every}")
