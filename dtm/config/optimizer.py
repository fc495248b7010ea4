"""The optimizer keys of every command that trains (``dtm pretrain``, ``dtm sft``, ``dtm train``), declared once:
AdamW, its learning-rate schedule (linear warmup -> constant -> linear decay to ``lr_min``) and gradient clipping.
A command's config subclasses :class:`OptimizerSettings` and changes a default with :func:`optimizer_default`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from dtm.config.fields import setting
from dtm.config.loader import check


@dataclass
class OptimizerSettings:
    """AdamW, the warmup -> constant -> decay schedule (``lr_warmup`` and ``lr_decay`` are fractions of the steps) and
    the gradient-norm clip."""

    renamed_keys: ClassVar[dict[str, str]] = {"warmup": "lr_warmup", "decay": "lr_decay"}

    lr: float = setting(1e-3, "peak learning rate (AdamW)")
    lr_min: float = setting(1e-4, "learning rate at the end of the decay")
    lr_warmup: float = setting(0.05, "fraction of the steps (of each phase, for DTM) with linear warmup")
    lr_decay: float = setting(0.1, "fraction of the steps (of each phase, for DTM) with linear decay to lr_min")
    betas: tuple[float, float] = setting((0.9, 0.999), "AdamW betas")
    eps: float = setting(1e-8, "AdamW epsilon")
    weight_decay: float = setting(0.01, "AdamW weight decay")
    grad_clip: float = setting(1.0, "gradient norm clip")

    def __post_init__(self) -> None:
        check(self.lr > 0, "lr", f"must be positive, got {self.lr}")
        check(0 <= self.lr_min <= self.lr, "lr_min", f"must be in [0, lr={self.lr}], got {self.lr_min}")
        check(self.lr_warmup >= 0, "lr_warmup", f"must be >= 0, got {self.lr_warmup}")
        check(self.lr_decay >= 0, "lr_decay", f"must be >= 0, got {self.lr_decay}")
        check(self.lr_warmup + self.lr_decay <= 1, "lr_warmup", "lr_warmup + lr_decay must be a fraction in [0, 1]")
        check(all(0 <= b < 1 for b in self.betas), "betas", f"must be in [0, 1), got {self.betas}")
        check(self.eps > 0, "eps", f"must be positive, got {self.eps}")
        check(self.weight_decay >= 0, "weight_decay", f"must be >= 0, got {self.weight_decay}")
        check(self.grad_clip > 0, "grad_clip", f"must be positive, got {self.grad_clip}")


def optimizer_default(name: str, default: Any) -> Any:
    """The optimizer key ``name`` with another default for one command (its help unchanged)."""
    return setting(default, OptimizerSettings.__dataclass_fields__[name].metadata["help"])
