"""Settings shared by every fine-tuning method (``RunConfig``) and its LoRA section; a method's config subclasses
``RunConfig``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from dtm.config.choices import TASK_NAMES, Finetune, MixedPrecision, PromptTruncation, Tracker
from dtm.config.fields import setting
from dtm.config.loader import check
from dtm.config.model import LoadOptions
from dtm.config.optimizer import OptimizerSettings, optimizer_default
from dtm.config.sampling import SamplingConfig
from dtm.methods import METHODS

LORA_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass
class LoraSection:
    """LoRA adapters, when a method trains adapters instead of every weight."""

    r: int = setting(8, "adapter rank")
    alpha: int = setting(16, "adapter scale numerator (the update is scaled by alpha / r)")
    dropout: float = setting(0.0, "dropout on the adapter's input")
    target_modules: list[str] | str = setting(
        factory=lambda: list(LORA_MODULES),
        help="module names matched as suffixes, or one regular expression matched against full module names",
    )


RUN_DIR_HELP = "run folder: config, metrics.jsonl, checkpoints, final model"


def check_task(task: str) -> None:
    """``task`` names a registered task."""
    check(task in TASK_NAMES, "task", f"unknown task {task!r}; available: {', '.join(TASK_NAMES)}")


@dataclass
class RunConfig(OptimizerSettings):
    """Settings shared by every trainer; a method's config subclasses it. ``method`` names the trainer."""

    renamed_keys: ClassVar[dict[str, str]] = OptimizerSettings.renamed_keys | {"model": "load"}

    method: str = setting("", "the trainer: " + ", ".join(METHODS))
    base_model: str = setting("runs/pretrain/model", "model folder to fine-tune (built-in, LLaDA, Dream, ...)")
    load: LoadOptions = setting(factory=LoadOptions, help="how base_model is loaded")
    task: str = setting("increment", "task whose prompts and reward are trained on: " + ", ".join(TASK_NAMES))
    task_options: dict[str, Any] = setting(
        factory=dict, help="the task's own options (e.g. maze size, text-task prompt style and data source)"
    )
    prompt_pool: int = setting(2000, "training prompts drawn from the task's train split; rollouts sample from them")
    max_prompt_length: int = setting(0, "text tasks: longest prompt in tokens (0 = no limit)")
    prompt_truncation: PromptTruncation = setting(
        "error", "text tasks: what a longer prompt does: stop with an error, or keep its last tokens"
    )
    finetune: Finetune = setting(
        "full",
        "full: train every weight (a teacher or reference is a frozen copy); lora: train LoRA adapters on the frozen "
        "(possibly 4-bit) base, a teacher or reference being a second adapter",
    )
    lora: LoraSection = setting(factory=LoraSection, help="LoRA adapters (with finetune: lora)")
    sampling: SamplingConfig = setting(factory=SamplingConfig, help="rollout decoding")
    micro_batch: int = setting(32, "sequences per forward/backward pass")
    grad_accum: int = setting(1, "micro-batches accumulated per optimizer step")
    betas: tuple[float, float] = optimizer_default("betas", (0.9, 0.99))
    weight_decay: float = optimizer_default("weight_decay", 0.1)
    max_nonfinite_steps: int = setting(
        10, "consecutive optimizer steps skipped for a non-finite loss or gradient before the run stops"
    )
    reward_timeout: float = setting(
        10.0, "seconds per reward call (a batch, or one completion when retried row by row); slower ones score 0"
    )
    max_reward_errors: float = setting(
        0.5,
        "share of a rollout batch's reward evaluations that may fail (raise or return NaN; they score 0) before the "
        "run stops with an error (1: never stop)",
    )
    seed: int = setting(0, "seed of everything random in the run (same seed, same machine: same numbers)")
    output_dir: str = setting("runs/dtm", RUN_DIR_HELP)
    save_every: int = setting(0, "also checkpoint every this many steps (0: at the end, and at phase ends for DTM)")
    keep_checkpoints: int = setting(
        2, "checkpoints kept in output_dir (older ones are deleted; 0: keep every checkpoint)"
    )
    eval_prompts: int = setting(256, "held-out prompts of the greedy evaluation before and after training (0 = none)")
    eval_every: int = setting(0, "also evaluate every this many steps (0 = only before and after training)")
    mixed_precision: MixedPrecision = setting("no", "autocast precision of forward passes (GPU)")
    gradient_checkpointing: bool = setting(False, "recompute activations in the backward pass to save memory")
    log_with: Tracker = setting(
        "none",
        "experiment tracker that also receives the metrics (the trackers extra): tensorboard (event files in "
        "output_dir/dtm), wandb (WANDB_MODE=offline works without an account) or trackio (local)",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        check_task(self.task)
        check(
            not self.load.load_in_4bit or self.finetune == "lora",
            "load.load_in_4bit",
            "a 4-bit base cannot be trained directly; set finetune: lora (adapters on the frozen base)",
        )
        check(
            self.max_prompt_length >= 0,
            "max_prompt_length",
            f"must be >= 0 (0 = no limit), got {self.max_prompt_length}",
        )
        check(self.micro_batch > 0, "micro_batch", f"must be positive, got {self.micro_batch}")
        check(self.grad_accum > 0, "grad_accum", f"must be positive, got {self.grad_accum}")
        check(self.max_nonfinite_steps > 0, "max_nonfinite_steps", f"must be positive, got {self.max_nonfinite_steps}")
        check(
            self.reward_timeout > 0,
            "reward_timeout",
            f"must be a positive number of seconds, got {self.reward_timeout}",
        )
        check(
            0 <= self.max_reward_errors <= 1,
            "max_reward_errors",
            f"must be a share in [0, 1], got {self.max_reward_errors}",
        )
        check(self.save_every >= 0, "save_every", f"must be >= 0 (0 = no periodic checkpoints), got {self.save_every}")
        check(
            self.keep_checkpoints >= 0,
            "keep_checkpoints",
            f"must be >= 0 (0 = keep every checkpoint), got {self.keep_checkpoints}",
        )
        check(self.eval_prompts >= 0, "eval_prompts", f"must be >= 0, got {self.eval_prompts}")
        check(self.eval_every >= 0, "eval_every", f"must be >= 0 (0 = only before and after), got {self.eval_every}")
        check(not self.eval_every or self.eval_prompts, "eval_every", "needs eval_prompts > 0")
