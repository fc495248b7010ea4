"""The closed sets of values that config keys take, shared by the configs and the code that acts on them."""

from __future__ import annotations

from typing import Literal

Masking = Literal["sar", "uniform"]  # where masked states come from: SAR blocks, or uniform over the response
Remasking = Literal["low_confidence", "random"]  # which masked positions a decoding round unmasks
KVCache = Literal["none", "prefix", "dual"]  # keys/values reused within a decoding block: none, before it, around it
WeightBaseline = Literal["none", "mean", "negative"]  # DMPO's baseline subtracted from its importance weights
Dtype = Literal["auto", "float32", "bfloat16", "float16"]
MixedPrecision = Literal["no", "bf16", "fp16"]
PromptTruncation = Literal["error", "left"]
Finetune = Literal["full", "lora"]
Tracker = Literal["none", "tensorboard", "wandb", "trackio"]
Split = Literal["train", "test"]

# Every task name (the registry of dtm.tasks holds the classes; a test keeps the two equal).
TOKEN_TASKS = ("increment", "maze", "sudoku_digits")
TEXT_TASKS = ("countdown", "gsm8k", "math500", "sudoku")
TASK_NAMES = tuple(sorted(TOKEN_TASKS + TEXT_TASKS))
