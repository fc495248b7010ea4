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
    "DTMConfig": "dtm.config.dtm",
    "DiffuGRPOConfig": "dtm.config.baselines",
    "WD1Config": "dtm.config.baselines",
    "SPGConfig": "dtm.config.baselines",
    "DMPOConfig": "dtm.config.baselines",
    "GDSDConfig": "dtm.config.baselines",
    "PretrainConfig": "dtm.config.pretrain",
    "EvalConfig": "dtm.config.evaluation",
    "DTMTrainer": "dtm.training.dtm",
    "DiffuGRPOTrainer": "dtm.training.baselines",
    "WD1Trainer": "dtm.training.baselines",
    "SPGTrainer": "dtm.training.baselines",
    "DMPOTrainer": "dtm.training.baselines",
    "GDSDTrainer": "dtm.training.baselines",
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

__all__ = sorted(_API)


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module 'dtm' has no attribute {name!r}")
    value = getattr(importlib.import_module(_API[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
