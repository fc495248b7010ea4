"""Trainers: DTM (``dtm.py``), and the RL baselines diffu-GRPO, wd1, SPG and the likelihood-free peers DMPO, GDSD
(``baselines.py``), on the shared plumbing of ``trainer.py``. A training config's ``method`` key (default ``dtm``)
says which (the rows of :data:`dtm.methods.METHODS`); :func:`train_from_config` reads it and runs the right trainer.

The trainers are imported on first use, so ``import dtm.training.<module>`` stays light.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from dtm.config import load_config
from dtm.methods import METHODS, get_method

if TYPE_CHECKING:
    from dtm.config.run import RunConfig
    from dtm.models.base import DiffusionLM
    from dtm.training.trainer import Trainer


def config_class(method: str) -> type[RunConfig]:
    """The config class of ``method`` (importing neither torch nor the trainers)."""
    return get_method(method).config_class()


def trainer_class(method: str) -> type[Trainer]:
    """The trainer class of ``method``."""
    return get_method(method).trainer_class()


def config_method(source: str | Path | Mapping[str, Any] | None, overrides: Sequence[str] = ()) -> str:
    """The ``method`` a config names: a ``method=...`` override, else the file's or mapping's key, else ``dtm``."""
    method: Any = "dtm"
    data: Any = source
    if isinstance(source, str | Path):
        try:
            data = yaml.safe_load(Path(source).read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError):
            data = None  # load_config reports the problem with the file
    if isinstance(data, Mapping):
        method = data.get("method", method)
    for override in overrides:
        key, sep, raw = override.partition("=")
        if sep and key.strip() == "method":
            method = yaml.safe_load(raw)
    return get_method(method).name


def load_train_config(source: str | Path | Mapping[str, Any] | None, overrides: Sequence[str] = ()) -> RunConfig:
    """The typed config of a training run (a YAML file or a mapping, plus ``key=value`` overrides), of the class its
    ``method`` names."""
    return load_config(config_class(config_method(source, overrides)), source, overrides)


def make_trainer(cfg: RunConfig, **kwargs: Any) -> Trainer:
    """The trainer for ``cfg``'s method; ``kwargs`` go to its constructor (model, task, resume, overwrite, ...)."""
    return trainer_class(cfg.method)(cfg, **kwargs)


def train_from_config(
    source: str | Path | Mapping[str, Any] | None,
    overrides: Sequence[str] = (),
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> DiffusionLM:
    """Load a training config, run its method's trainer to the end and return the trained model (also saved in
    ``output_dir/final/model``)."""
    cfg = load_train_config(source, overrides)
    return make_trainer(cfg, resume=resume, overwrite=overwrite, progress=progress).train()


__all__ = [
    "METHODS",
    "config_class",
    "config_method",
    "load_train_config",
    "make_trainer",
    "train_from_config",
    "trainer_class",
]
