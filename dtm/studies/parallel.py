"""Run a study's independent seeds side by side, each in its own process with one intra-op thread.

Every seed's work runs under the same thread setting whether it runs alone or beside others, so the numbers of a seed
do not depend on ``workers`` (torch's float reductions depend on the thread count).
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar

import torch

T = TypeVar("T")


def _single_thread(fn: Callable[..., T], *args: Any) -> T:
    torch.set_num_threads(1)
    return fn(*args)


def map_seeds(fn: Callable[..., T], seeds: Sequence[int], *args: Any, workers: int = 1) -> list[T]:
    """``[fn(seed, *args) for seed in seeds]`` with one torch thread per seed, in up to ``workers`` processes (1: in
    this process). ``fn`` and ``args`` must be picklable when ``workers > 1``."""
    if workers <= 1 or len(seeds) == 1:
        previous = torch.get_num_threads()
        try:
            return [_single_thread(fn, seed, *args) for seed in seeds]
        finally:
            torch.set_num_threads(previous)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(workers, len(seeds)), mp_context=context) as pool:
        futures = [pool.submit(_single_thread, fn, seed, *args) for seed in seeds]
        return [f.result() for f in futures]
