"""dtm: Discrete Tilt Matching for masked diffusion language models.

The public API, importable from the top level (loaded on first use, so ``import dtm`` stays fast)::

    from dtm import DTMConfig, DTMTrainer, load_config, load_model, generate

Configs (``DTMConfig``, ``WD1Config``, ..., ``load_config``) import neither torch nor transformers.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any


class _DropMissingKernelsWarning(logging.Filter):
    """bitsandbytes warns, on import and on CPUs with AVX512-BF16, that its optional faster 4-bit CPU kernel (the
    `kernels` package) is missing; it then uses its own kernel, so the warning says nothing about a dtm run, and every
    command that imports peft or transformers would print it, 4-bit model or not."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "gemm_4bit_forward from kernels-community" not in record.getMessage()


logging.getLogger("bitsandbytes.backends.cpu.ops").addFilter(_DropMissingKernelsWarning())

# name -> module that defines it
_API = {
    "ConfigError": "dtm.config",
    "load_config": "dtm.config",
    "save_config": "dtm.config",
    "SamplingConfig": "dtm.config.sampling",
    "LoadOptions": "dtm.config.model",
    "TinyModelConfig": "dtm.config.model",
    "LoraSection": "dtm.config.run",
    "RunConfig": "dtm.config.run",
    "PretrainConfig": "dtm.config.pretrain",
    "EvalConfig": "dtm.config.evaluation",
    "load_train_config": "dtm.training",
    "make_trainer": "dtm.training",
    "train_from_config": "dtm.training",
    "pretrain": "dtm.training.pretrain",
    "run_eval": "dtm.evaluation",
    "DiffusionLM": "dtm.models",
    "load_model": "dtm.models",
    "save_model": "dtm.models",
    "build_tiny_model": "dtm.models",
    "generate": "dtm.diffusion.sampler",
    "rollout": "dtm.rollouts",
    "get_task": "dtm.tasks",
    "build_task": "dtm.tasks",
}


def _api() -> dict[str, str]:
    """Every public name -> its module: the fixed names above and each registered method's config and trainer."""
    from dtm.methods import METHODS, split_path

    paths = [split_path(path) for m in METHODS.values() for path in (m.config, m.trainer)]
    return _API | {name: module for module, name in paths}


__all__ = sorted(_api())


def __getattr__(name: str) -> Any:
    api = _api()
    if name not in api:
        raise AttributeError(f"module 'dtm' has no attribute {name!r}")
    value = getattr(importlib.import_module(api[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_api()))
