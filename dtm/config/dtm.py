"""Settings of a DTM run (``method: dtm``): the tilt schedule, the c-DTM loss, teacher and replay buffer."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Literal

from dtm.config.choices import Masking
from dtm.config.fields import setting
from dtm.config.loader import check
from dtm.config.run import RunConfig


@dataclass
class DTMConfig(RunConfig):
    """Every setting of a DTM run; the shared ones are in :class:`RunConfig`. Defaults are a CPU-sized run on the
    ``increment`` toy task.

    The run anneals the tilt pi_a ∝ p_base exp(a r) from a = 0 to ``a_end`` in phases of ``h``: each phase distils the
    frozen teacher pi_a into the student pi_{a+h} with the c-DTM loss on the teacher's rollouts (the replay buffer).
    """

    renamed_keys: ClassVar[dict[str, str]] = RunConfig.renamed_keys | {"teacher": "finetune"}

    method: Literal["dtm"] = setting("dtm", "the trainer (dtm)")
    h: float = setting(2.0, "tilt added per phase (the last phase is shortened to end at a_end)")
    a_end: float = setting(6.0, "final tilt: the target is p_base exp(a_end r), normalised per prompt")
    steps_per_h: int = setting(40, "optimizer steps per phase")
    control_variate: float = setting(1.0, "the constant c of the c-DTM loss (any c leaves the minimiser unchanged)")
    adaptive_c: bool = setting(False, "replace c by an EMA of the variance-optimal c* estimated on each batch")
    c_ema: float = setting(0.9, "EMA factor of adaptive_c")
    prompt_baseline: bool = setting(
        False,
        "use each rollout's leave-one-out estimate of Z = E[exp(h r) | prompt], from the buffer's other completions "
        "of its prompt, as its c (instead of control_variate)",
    )
    tilt_normalization: Literal["none", "prompt"] = setting(
        "none", "prompt: divide each rollout's exp(h r) and c by its prompt's leave-one-out Z estimate"
    )
    masking: Masking = setting("sar", "masked states of the loss: SAR-aligned (as decoding) or uniform")
    ema: float = setting(0.0, "the next phase's teacher is an EMA of the student with this factor (0 = the student)")
    buffer_prompts: int = setting(64, "prompts in the replay buffer, rebuilt from the new teacher every phase")
    buffer_completions: int = setting(4, "teacher rollouts per buffer prompt")
    refresh_every: int = setting(10, "replace refresh_prompts buffer prompts every this many steps (0 = never)")
    refresh_prompts: int = setting(16, "prompts replaced (with fresh teacher rollouts) at each refresh")

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.h > 0, "h", f"must be > 0, got {self.h}")
        check(self.a_end >= self.h, "a_end", f"must be >= h={self.h}, got {self.a_end}")
        check(self.steps_per_h > 0, "steps_per_h", f"must be positive, got {self.steps_per_h}")
        check(-10 <= self.control_variate <= 10, "control_variate", f"must be in [-10, 10], got {self.control_variate}")
        check(0 <= self.c_ema < 1, "c_ema", f"must be in [0, 1), got {self.c_ema}")
        check(0 <= self.ema < 1, "ema", f"must be in [0, 1) (0 = off), got {self.ema}")
        per_prompt = self.prompt_baseline or self.tilt_normalization == "prompt"
        check(
            not per_prompt or self.buffer_completions >= 2,
            "buffer_completions",
            "prompt_baseline and tilt_normalization=prompt need at least 2 completions per prompt",
        )
        check(
            not (self.prompt_baseline and self.adaptive_c),
            "prompt_baseline",
            "chooses c per prompt; it cannot be combined with adaptive_c",
        )
        check(self.buffer_prompts > 0, "buffer_prompts", f"must be positive, got {self.buffer_prompts}")
        check(self.buffer_completions > 0, "buffer_completions", f"must be positive, got {self.buffer_completions}")
        pool_ok = self.prompt_pool >= self.buffer_prompts
        check(pool_ok, "prompt_pool", f"must be >= buffer_prompts ({self.buffer_prompts}), got {self.prompt_pool}")
        check(self.refresh_every >= 0, "refresh_every", f"must be >= 0 (0 = never), got {self.refresh_every}")
        check(
            0 <= self.refresh_prompts <= self.buffer_prompts,
            "refresh_prompts",
            f"must be in [0, buffer_prompts={self.buffer_prompts}], got {self.refresh_prompts}",
        )

    @property
    def num_phases(self) -> int:
        return math.ceil(self.a_end / self.h - 1e-9)

    @property
    def total_steps(self) -> int:
        return self.num_phases * self.steps_per_h

    @property
    def planned_rollouts(self) -> int:
        """Rollouts (reward evaluations) per process over the run: a full buffer per phase, plus its refreshes."""
        refreshes = (self.steps_per_h - 1) // self.refresh_every if self.refresh_every and self.refresh_prompts else 0
        return self.num_phases * self.buffer_completions * (self.buffer_prompts + refreshes * self.refresh_prompts)

    def phase_tilt(self, phase: int) -> tuple[float, float]:
        """(a, h) of a phase: a = phase * h; the last phase's h is shortened so that a + h = a_end."""
        a = phase * self.h
        return a, min(self.h, self.a_end - a)
