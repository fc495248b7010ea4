"""One place that builds the ``Accelerator`` for every trainer."""

from __future__ import annotations

from typing import Any

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState


def make_accelerator(**kwargs: Any) -> Accelerator:
    """An ``Accelerator`` that also runs multi-process on CPU-only machines.

    Without a GPU, accelerate only joins a CPU process group (gloo) when asked for CPU explicitly, so a
    ``torchrun``/``accelerate launch`` of several CPU processes would otherwise train as independent single processes.
    The per-process accelerator settings (mixed precision) are cleared first, so several trainers can run one after
    another in one process (studies, tests) with different settings; the process group itself is kept.
    """
    AcceleratorState._reset_state()
    return Accelerator(cpu=not torch.cuda.is_available(), **kwargs)
