"""How a model folder is loaded (``LoadOptions``), the shape of the built-in model (``TinyModelConfig``), and the
task a pretrained folder was made for."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dtm.config.choices import Dtype
from dtm.config.fields import setting
from dtm.config.loader import ConfigError


@dataclass
class LoadOptions:
    """How to load a model folder (the ``load`` section of training and evaluation configs)."""

    trust_remote_code: bool = setting(False, "run the modelling code shipped with the weights (LLaDA, Dream)")
    dtype: Dtype = setting("auto", "dtype of the weights (auto: the checkpoint's own)")
    load_in_4bit: bool = setting(
        False, "NF4 4-bit base with bf16 compute (needs bitsandbytes, the quantization extra; CPU or CUDA)"
    )
    mask_token_id: int | None = setting(
        None, "mask token id when neither config.json nor the tokenizer names one (LLaDA: 126336)"
    )
    shift_logits: bool | None = setting(
        None, "whether position i's logits come out at i - 1 (null: detect from the model type; Dream shifts)"
    )


@dataclass
class TinyModelConfig:
    """Shape of the built-in model, a small bidirectional Llama. The defaults give about 0.2M parameters for a
    32-token vocabulary; ``dtm pretrain`` takes the vocabulary and mask token from the task."""

    vocab_size: int = setting(32, "vocabulary size (set from the task by dtm pretrain)")
    mask_token_id: int = setting(1, "id of the mask token (set from the task by dtm pretrain)")
    hidden_size: int = setting(96, "width of the residual stream")
    num_layers: int = setting(4, "transformer layers")
    num_heads: int = setting(4, "attention heads; must divide hidden_size")
    intermediate_size: int = setting(256, "width of the MLP")
    max_length: int = setting(256, "longest prompt + response, in tokens")
    rope_theta: float = setting(10000.0, "base of the rotary position embedding")


TASK_RECORD = "dtm_task"  # config.json key of the task (and its options) a `dtm pretrain` model learnt


def recorded_task(path: str | Path) -> dict[str, Any] | None:
    """The task (``{"task": ..., "task_options": ...}``) the model folder at ``path`` was pretrained on, from its
    config.json alone; None when it records none (converted and downloaded models, or no folder)."""
    try:
        config = json.loads(Path(path, "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):  # no folder, or a config.json that loading the model reports on
        return None
    return config.get(TASK_RECORD) if isinstance(config, dict) else None


def check_model_task(path: str | Path, task: str, key: str) -> dict[str, Any] | None:
    """Refuse to use the model folder at ``path`` with ``task`` when the folder records another one (``dtm pretrain``
    writes it into config.json; converted and downloaded models record none and pass). Reads config.json only, so the
    mistake is caught before any model loads. Returns the folder's record (:func:`recorded_task`)."""
    record = recorded_task(path)
    if record is not None and record["task"] != task:
        raise ConfigError(
            f"{key}: {path} was pretrained on task {record['task']} (task_options {record['task_options']}), but "
            f"this run's task is {task}; pretrain a base model on {task} or give its folder"
        )
    return record
