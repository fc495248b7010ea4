"""A seventh method for tests/test_methods.py: wd1's estimator under another name, a config class and a trainer, and
nothing else: the registry row that test adds is all the rest of the library needs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from dtm.config.baselines import WD1Config
from dtm.config.fields import setting
from dtm.training.baselines import WD1Trainer


@dataclass
class ToyConfig(WD1Config):
    """The toy method (wd1's keys)."""

    method: Literal["toy"] = setting("toy", "the trainer (toy)")


class ToyTrainer(WD1Trainer):
    """The toy method's trainer: wd1's loss."""

    cfg: ToyConfig
