"""Settings of the methods DTM is compared with: the RL baselines diffu-GRPO, wd1 and SPG, and the likelihood-free
peers DMPO and GDSD. The class docstrings give each method's published LLaDA-8B values."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from dtm.config.choices import Masking, WeightBaseline
from dtm.config.fields import setting
from dtm.config.loader import check
from dtm.config.optimizer import optimizer_default
from dtm.config.run import RUN_DIR_HELP, RunConfig


@dataclass
class GroupRolloutConfig(RunConfig):
    """Settings shared by the on-policy methods (the run settings are in :class:`RunConfig`). Defaults are a CPU-sized
    run on the ``increment`` toy task. Each step draws ``micro_batch x grad_accum / num_generations`` fresh prompts,
    ``num_generations`` completions each, and takes ``inner_updates`` optimizer steps on them."""

    renamed_keys: ClassVar[dict[str, str]] = RunConfig.renamed_keys | {"steps": "rollout_batches"}

    output_dir: str = setting("runs/baseline", RUN_DIR_HELP)
    lr: float = optimizer_default("lr", 5e-4)
    lr_min: float = optimizer_default("lr_min", 5e-5)
    rollout_batches: int = setting(40, "rollout batches; each is used for inner_updates optimizer steps")
    num_generations: int = setting(4, "K: completions per prompt, one group (papers: 6)")
    inner_updates: int = setting(1, "mu: optimizer steps per rollout batch")

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.rollout_batches > 0, "rollout_batches", f"must be positive, got {self.rollout_batches}")
        check(self.num_generations >= 2, "num_generations", f"must be >= 2 (a group), got {self.num_generations}")
        check(self.inner_updates > 0, "inner_updates", f"must be positive, got {self.inner_updates}")
        per_step = self.micro_batch * self.grad_accum
        check(
            per_step % self.num_generations == 0,
            "num_generations",
            f"must divide micro_batch x grad_accum = {per_step} (each optimizer step covers whole groups), "
            f"got {self.num_generations}",
        )
        check(
            self.prompt_pool >= self.prompts_per_step,
            "prompt_pool",
            f"must be >= the prompts per step micro_batch x grad_accum / num_generations = {self.prompts_per_step}, "
            f"got {self.prompt_pool}",
        )

    @property
    def prompts_per_step(self) -> int:
        """Prompts per rollout batch and process: the batch of one optimizer step, in groups of K."""
        return self.micro_batch * self.grad_accum // self.num_generations

    @property
    def planned_rollouts(self) -> int:
        """Rollouts (reward evaluations) per process over the run: one batch of K per prompt each step."""
        return self.rollout_batches * self.prompts_per_step * self.num_generations

    @property
    def total_updates(self) -> int:
        return self.rollout_batches * self.inner_updates


def _check_reference_penalty(beta: float, ref_sync_every: int) -> None:
    """The settings of a penalty of weight ``beta`` towards a reference policy synced every ``ref_sync_every``
    steps."""
    check(beta >= 0, "beta", f"must be >= 0 (0 = no KL term), got {beta}")
    check(ref_sync_every >= 0, "ref_sync_every", f"must be >= 0 (0 = never), got {ref_sync_every}")
    check(
        beta > 0 or not ref_sync_every,
        "ref_sync_every",
        "needs beta > 0 (with beta = 0 there is no reference policy to sync)",
    )


P_MASK_HELP = "probability of masking each prompt token in the one-step log-prob estimate"
REF_SYNC_HELP = "copy the policy into the reference every this many steps (0 = never)"
MASKING_HELP = "masked states of the loss: uniform anywhere in the response (as its public code), or SAR-aligned"


@dataclass
class DiffuGRPOConfig(GroupRolloutConfig):
    """diffu-GRPO (d1). Published: K = 6, mu = 12, clip 0.5, beta 0.04, p_mask 0.15, lr 3e-6, grad clip 0.2."""

    method: Literal["diffu_grpo"] = setting("diffu_grpo", "the trainer (diffu_grpo)")
    output_dir: str = setting("runs/diffu_grpo", RUN_DIR_HELP)
    clip_eps: float = setting(0.5, "PPO clip range of the importance ratio")
    beta: float = setting(0.04, "weight of the KL to the reference policy (0: no reference model)")
    p_mask: float = setting(0.15, P_MASK_HELP)
    ref_sync_every: int = setting(0, REF_SYNC_HELP)

    def __post_init__(self) -> None:
        super().__post_init__()
        check(0 < self.clip_eps < 1, "clip_eps", f"must be in (0, 1), got {self.clip_eps}")
        check(0 <= self.p_mask < 1, "p_mask", f"must be in [0, 1), got {self.p_mask}")
        _check_reference_penalty(self.beta, self.ref_sync_every)


@dataclass
class WD1Config(GroupRolloutConfig):
    """wd1. Published: K = 6, p_mask 0.15, lr 3e-6."""

    method: Literal["wd1"] = setting("wd1", "the trainer (wd1)")
    output_dir: str = setting("runs/wd1", RUN_DIR_HELP)
    psi: float = setting(1.0, "inverse temperature of the group softmax weights")
    p_mask: float = setting(0.15, P_MASK_HELP)

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.psi > 0, "psi", f"must be positive, got {self.psi}")
        check(0 <= self.p_mask < 1, "p_mask", f"must be in [0, 1), got {self.p_mask}")


@dataclass
class SPGConfig(GroupRolloutConfig):
    """SPG. Published: K = 6, mu = 4, 2 masked states per sequence, beta 1.0-2.0, mixture weight 0.5."""

    method: Literal["spg"] = setting("spg", "the trainer (spg)")
    output_dir: str = setting("runs/spg", RUN_DIR_HELP)
    mc_samples: int = setting(2, "SAR-aligned masked states per sequence and update")
    eubo_beta: float = setting(1.5, "beta of the evidence upper bound")
    eubo_weight: float = setting(
        0.5, "negative samples: w x EUBO + (1 - w) x ELBO (1: SPG w/ EUBO, 0.5: SPG w/ mixture)"
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.mc_samples > 0, "mc_samples", f"must be positive, got {self.mc_samples}")
        check(self.eubo_beta >= 1, "eubo_beta", f"must be >= 1, got {self.eubo_beta}")
        check(0 <= self.eubo_weight <= 1, "eubo_weight", f"must be in [0, 1], got {self.eubo_weight}")


@dataclass
class DMPOConfig(GroupRolloutConfig):
    """DMPO. Its public code (LLaDA-8B): K = 16, mu = 8, alpha 0.04, negative weight baseline of strength 1, 4 masked
    states per sequence for the loss and 4 for the reference ratio, lr 1e-6, grad clip 0.2."""

    method: Literal["dmpo"] = setting("dmpo", "the trainer (dmpo)")
    output_dir: str = setting("runs/dmpo", RUN_DIR_HELP)
    alpha: float = setting(0.04, "temperature of the target p_ref exp(r / alpha)")
    baseline: WeightBaseline = setting("negative", "weight baseline subtracted from the importance weights")
    baseline_strength: float = setting(1.0, "lambda: the baseline's factor")
    mc_samples: int = setting(4, "masked states per sequence and update")
    ratio_samples: int = setting(
        4, "masked states per rollout for the ELBO estimate of log p_ref / p_theta (0: no reference)"
    )
    masking: Masking = setting("uniform", MASKING_HELP)

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.alpha > 0, "alpha", f"must be positive, got {self.alpha}")
        check(self.baseline_strength >= 0, "baseline_strength", f"must be >= 0, got {self.baseline_strength}")
        check(self.mc_samples > 0, "mc_samples", f"must be positive, got {self.mc_samples}")
        check(self.ratio_samples >= 0, "ratio_samples", f"must be >= 0 (0 = no reference), got {self.ratio_samples}")


@dataclass
class GDSDConfig(GroupRolloutConfig):
    """GDSD. Its public code (LLaDA-8B): K = 6, mu = 8, psi 1.0, beta 0.001, one masked state per sequence and
    update, lr 3e-6, grad clip 0.2."""

    method: Literal["gdsd"] = setting("gdsd", "the trainer (gdsd)")
    output_dir: str = setting("runs/gdsd", RUN_DIR_HELP)
    psi: float = setting(1.0, "scale of the advantage that each token's log-ratio is matched to")
    beta: float = setting(0.001, "weight of the k2 penalty to the reference policy (0: no reference model)")
    ref_sync_every: int = setting(0, REF_SYNC_HELP)
    masking: Masking = setting("uniform", MASKING_HELP)

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.psi > 0, "psi", f"must be positive, got {self.psi}")
        _check_reference_penalty(self.beta, self.ref_sync_every)
