"""The registry of fine-tuning methods: one row per method, read by everything that lists or dispatches on them.

The CLI's help, ``dtm config show`` and docs/configs.md, the top-level API (``dtm.DTMConfig``, ``dtm.WD1Trainer``,
...), the model card of ``dtm export``, ``dtm study compare``'s checks and the trainer dispatch of ``dtm train`` all
read :data:`METHODS`; a row names its config and trainer classes by import path, so this module imports neither torch
nor the trainers. Adding a method is one estimator, one config class, one trainer and one row here
(docs/methods.md, "Adding a method").
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from dtm.config.run import RunConfig
    from dtm.training.trainer import Trainer

Family = Literal["tilt", "elbo"]
FAMILIES: dict[str, str] = {
    "tilt": "matches a reward-tilted target law with a loss on the unmasking posteriors",
    "elbo": "maximises expected reward through an ELBO-style estimate of log pi (RL)",
}


@dataclass(frozen=True)
class Method:
    """One fine-tuning method.

    ``name`` is the ``method`` key of a training config; ``config`` and ``trainer`` are ``module:Class`` import paths
    (the config class subclasses :class:`dtm.config.run.RunConfig`, the trainer :class:`dtm.training.trainer.Trainer`);
    ``title`` heads the model card; ``family`` is the method's family (:data:`FAMILIES`); ``summary`` is one line
    for help texts and the docs."""

    name: str
    title: str
    family: Family
    summary: str
    config: str
    trainer: str

    def __post_init__(self) -> None:
        for kind, path in (("config", self.config), ("trainer", self.trainer)):
            if path.count(":") != 1:
                raise ValueError(f"method {self.name!r}: {kind} must be 'module:Class', got {path!r}")
        if self.family not in FAMILIES:
            raise ValueError(f"method {self.name!r}: family must be one of {', '.join(FAMILIES)}, got {self.family!r}")

    def config_class(self) -> type[RunConfig]:
        """The config class (imports its module: configs are torch-free)."""
        return _resolve(self.config)

    def trainer_class(self) -> type[Trainer]:
        """The trainer class (imports torch)."""
        return _resolve(self.trainer)


def split_path(path: str) -> tuple[str, str]:
    """``(module, class name)`` of a ``module:Class`` path."""
    module, _, name = path.partition(":")
    return module, name


def _resolve(path: str) -> type:
    module, name = split_path(path)
    return getattr(importlib.import_module(module), name)


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method(
            "dtm",
            "Discrete Tilt Matching (DTM)",
            "tilt",
            "anneal towards p_base exp(a r) by phases a -> a + h, fitting each tilted posterior with the c-DTM loss",
            "dtm.config.dtm:DTMConfig",
            "dtm.training.dtm:DTMTrainer",
        ),
        Method(
            "diffu_grpo",
            "diffu-GRPO",
            "elbo",
            "clipped policy gradient on a one-step mean-field estimate of each token's log-probability (d1)",
            "dtm.config.baselines:DiffuGRPOConfig",
            "dtm.training.baselines:DiffuGRPOTrainer",
        ),
        Method(
            "wd1",
            "wd1",
            "elbo",
            "ratio-free weighted likelihood fit towards pi_old exp(psi A), with negative-sample unlearning",
            "dtm.config.baselines:WD1Config",
            "dtm.training.baselines:WD1Trainer",
        ),
        Method(
            "spg",
            "SPG (sandwiched policy gradient)",
            "elbo",
            "policy gradient on a likelihood lower bound for good samples and an upper bound for bad ones",
            "dtm.config.baselines:SPGConfig",
            "dtm.training.baselines:SPGTrainer",
        ),
        Method(
            "dmpo",
            "DMPO (distribution matching policy optimization)",
            "tilt",
            "importance-weighted denoising cross-entropy towards p_ref exp(r / alpha)",
            "dtm.config.baselines:DMPOConfig",
            "dtm.training.baselines:DMPOTrainer",
        ),
        Method(
            "gdsd",
            "GDSD (guided denoiser self-distillation)",
            "tilt",
            "per-token log-ratios to the rollout policy regressed on psi x the leave-one-out advantage",
            "dtm.config.baselines:GDSDConfig",
            "dtm.training.baselines:GDSDTrainer",
        ),
    )
}


def get_method(name: object) -> Method:
    """The registry row of ``name``; an unknown name is a ConfigError on the ``method`` key listing the known ones."""
    if name not in METHODS:
        from dtm.config.loader import ConfigError

        raise ConfigError(f"method: must be one of {', '.join(map(repr, METHODS))}, got {name!r}")
    return METHODS[name]  # type: ignore[index]
