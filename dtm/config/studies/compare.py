"""Settings of ``dtm study compare`` (``configs/compare-*.yaml``): DTM against the baselines on one task at equal
budgets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dtm.config.fields import setting
from dtm.config.loader import check
from dtm.config.studies import check_seeds
from dtm.methods import METHODS

# Keys the comparison sets itself in every run's training config.
MANAGED_KEYS = ("method", "task", "task_options", "base_model", "seed", "output_dir", "eval_prompts", "eval_every")
BUDGETS = ("rollouts", "compute")


@dataclass
class CompareConfig:
    """Settings of a comparison; see ``configs/compare-*.yaml``."""

    output_dir: str = setting("runs/compare", "study folder: every run, results.json, report.md, figures")
    task: str = setting("maze", "task of every run")
    task_options: dict[str, Any] = setting(factory=dict, help="the task's own options")
    base_model: str = setting(
        "",
        'base model of each seed: a model folder ("{seed}" in it is replaced by the seed), or "" to pretrain one per '
        "seed with the pretrain keys",
    )
    pretrain: dict[str, Any] = setting(
        factory=dict, help="PretrainConfig keys of the per-seed base models (when base_model is empty)"
    )
    methods: list[str] = setting(factory=lambda: list(METHODS), help="methods compared: " + ", ".join(METHODS))
    seeds: list[int] = setting(factory=lambda: [0, 1, 2], help="seeds; each method runs once per seed")
    shared: dict[str, Any] = setting(
        factory=dict, help="training-config keys for every method (sampling, micro_batch, lr, ...)"
    )
    method_options: dict[str, dict[str, Any]] = setting(
        factory=dict,
        help="training-config keys per method; they win over shared (options of a method not in methods are ignored)",
    )
    rollouts: int = setting(0, "rollout budget of every run (0: what DTM's config plans; then dtm must be a method)")
    budgets: list[str] = setting(
        factory=lambda: ["rollouts", "compute"],
        help="budgets compared: rollouts (equal reward evaluations) and compute (each baseline spends DTM's "
        "forward-token equivalents of the same seed; needs rollouts and dtm)",
    )
    workers: int = setting(1, "seeds run side by side in this many processes (one torch thread each; same numbers)")
    curve_points: int = setting(6, "held-out greedy evaluations during each run (the reward-vs-rollouts figure)")
    curve_prompts: int = setting(64, "held-out prompts of each curve point")
    eval_prompts: int = setting(128, "held-out prompts of the final evaluation (greedy and sampled)")
    eval_samples: int = setting(
        8, "samples per held-out prompt at the rollout temperature in the final evaluation (sampled reward, diversity)"
    )

    def __post_init__(self) -> None:
        check(bool(self.methods), "methods", "must name at least one method")
        for method in self.methods:
            check(method in METHODS, "methods", f"unknown method {method!r}; available: {', '.join(METHODS)}")
        check(len(set(self.methods)) == len(self.methods), "methods", f"has duplicates: {self.methods}")
        check_seeds(self.seeds, self.workers)
        for method in self.method_options:
            check(method in METHODS, "method_options", f"unknown method {method!r}; available: {', '.join(METHODS)}")
        for key in MANAGED_KEYS:
            check(key not in self.shared, f"shared.{key}", "is set by the comparison; remove it")
            for method, options in self.method_options.items():
                check(key not in options, f"method_options.{method}.{key}", "is set by the comparison; remove it")
        for method, options in self.method_options.items():
            check(
                method == "dtm" or "rollout_batches" not in options,
                f"method_options.{method}.rollout_batches",
                "is derived from the rollout budget (`rollouts`); remove it",
            )
        check(
            self.base_model or self.pretrain,
            "base_model",
            "give a model folder, or `pretrain` settings to pretrain the shared base model",
        )
        check(self.rollouts >= 0, "rollouts", f"must be >= 0 (0 = DTM's planned rollouts), got {self.rollouts}")
        check(
            self.rollouts > 0 or "dtm" in self.methods,
            "rollouts",
            "must be set when dtm is not among the methods (0 means: use DTM's planned rollouts)",
        )
        for budget in self.budgets:
            check(budget in BUDGETS, "budgets", f"unknown budget {budget!r}; available: {', '.join(BUDGETS)}")
        check("rollouts" in self.budgets, "budgets", "must include rollouts (the compute budget is calibrated on it)")
        check(
            "compute" not in self.budgets or "dtm" in self.methods,
            "budgets",
            "compute is DTM's compute; it needs dtm among the methods",
        )
        check(self.curve_points > 0, "curve_points", f"must be positive, got {self.curve_points}")
        check(self.curve_prompts > 0, "curve_prompts", f"must be positive, got {self.curve_prompts}")
        check(self.eval_prompts > 0, "eval_prompts", f"must be positive, got {self.eval_prompts}")
        check(self.eval_samples > 1, "eval_samples", f"must be > 1 (diversity needs several), got {self.eval_samples}")
