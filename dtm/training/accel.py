"""One place that builds the ``Accelerator`` for every trainer."""

from __future__ import annotations

from typing import Any

import torch
from accelerate import Accelerator


def make_accelerator(**kwargs: Any) -> Accelerator:
    """An ``Accelerator`` that also runs multi-process on CPU-only machines.

    Without a GPU, accelerate only joins a CPU process group (gloo) when asked for CPU explicitly, so a
    ``torchrun``/``accelerate launch`` of several CPU processes would otherwise train as independent single processes.
    """
    return Accelerator(cpu=not torch.cuda.is_available(), **kwargs)
