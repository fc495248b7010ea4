"""Settings of ``dtm study fit`` (``configs/fit-*.yaml``): the exact fit diagnostic of DTM's phases on mazes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dtm.config.dtm import DTMConfig
from dtm.config.fields import setting
from dtm.config.loader import ConfigError, check, load_config
from dtm.config.pretrain import PretrainConfig
from dtm.config.sampling import MAX_EXACT_BLOCK, check_exact_sampler
from dtm.config.studies import check_seeds

# Keys the study sets itself in every run's DTM config.
MANAGED_KEYS = ("method", "base_model", "seed", "output_dir", "eval_prompts", "eval_every")
MAX_MAZE_SIZE = 4  # a 4 x 4 maze has at most a few dozen valid paths; a 5 x 5 one can have thousands


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` on top of ``base``, merging nested mappings (a variant may set one key of a section)."""
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


@dataclass
class FitStudyConfig:
    """Settings of ``dtm study fit``; see ``configs/fit-maze.yaml``."""

    output_dir: str = setting("runs/fit", "study folder: every run, results.json, report.md, figures")
    seeds: list[int] = setting(factory=lambda: [0], help="seeds; every variant runs once per seed")
    base_model: str = setting(
        "",
        'base model: a model folder ("{seed}" in it is replaced by each seed, e.g. runs/bases/seed{seed}/model), or '
        '"" to pretrain one per seed with the pretrain keys',
    )
    pretrain: dict[str, Any] = setting(
        factory=dict, help="PretrainConfig keys of the per-seed base models (task and task options come from dtm)"
    )
    dtm: dict[str, Any] = setting(
        factory=dict,
        help="the DTM run's config (DTMConfig keys); task must be maze, with a sampler whose exact law is the target's",
    )
    variants: dict[str, dict[str, Any]] = setting(
        factory=dict,
        help="named variants, each DTMConfig keys applied over dtm (e.g. {lr-1e-4: {lr: 1.0e-4}}); every variant "
        'runs on every seed (empty: one run of dtm, named "dtm")',
    )
    train_mazes: int = setting(16, "distinct training-split mazes measured exactly")
    heldout_mazes: int = setting(32, "distinct held-out (test-split) mazes measured exactly")
    measure_every: int = setting(0, "also measure every this many optimizer steps inside a phase (0: phase ends only)")
    invalid_samples: int = setting(8, "teacher draws per maze for the Monte Carlo (invalid-response) part of the gain")
    workers: int = setting(1, "seeds run side by side in this many processes (one torch thread each; same numbers)")

    def __post_init__(self) -> None:
        check_seeds(self.seeds, self.workers)
        for key in MANAGED_KEYS:
            check(key not in self.dtm, f"dtm.{key}", "is set by the study; remove it")
            for name, variant in self.variants.items():
                check(key not in variant, f"variants.{name}.{key}", "is set by the study; remove it")
        check(self.dtm.get("task", "maze") == "maze", "dtm.task", "the fit study needs the maze task")
        check(self.base_model or self.pretrain, "base_model", "give a model folder, or `pretrain` settings")
        check(self.train_mazes > 0, "train_mazes", f"must be positive, got {self.train_mazes}")
        check(self.heldout_mazes > 0, "heldout_mazes", f"must be positive, got {self.heldout_mazes}")
        check(self.measure_every >= 0, "measure_every", f"must be >= 0 (0 = phase ends only), got {self.measure_every}")
        check(self.invalid_samples > 0, "invalid_samples", f"must be positive, got {self.invalid_samples}")

    def base_path(self, seed: int) -> Path | None:
        """The given base model of a seed (None: pretrained by the study)."""
        return Path(self.base_model.replace("{seed}", str(seed))) if self.base_model else None

    @property
    def variant_names(self) -> list[str]:
        return list(self.variants) or ["dtm"]

    def dtm_config(self, variant: str, seed: int, base_model: str | Path, output_dir: str | Path) -> DTMConfig:
        """The DTM config of one variant's run on one seed; raises ConfigError (naming the section) on a bad
        setting."""
        section = f"variants.{variant}" if variant in self.variants else "dtm"
        values = _merge(self.dtm, self.variants.get(variant, {})) | {
            "method": "dtm",
            "task": "maze",
            "base_model": str(base_model),
            "seed": seed,
            "output_dir": str(output_dir),
            "eval_prompts": 0,
        }
        try:
            cfg = load_config(DTMConfig, values)
            check_exact_sampler(cfg.sampling, cfg.sampling.gen_length)
            check(
                cfg.sampling.block_length <= MAX_EXACT_BLOCK,
                "sampling.block_length",
                f"the exact law enumerates 2^block_length states per block; at most {MAX_EXACT_BLOCK}",
            )
            size = cfg.task_options.get("size", 4)
            check(
                size <= MAX_MAZE_SIZE,
                "task_options.size",
                f"a {size}x{size} maze has too many paths to enumerate; at most {MAX_MAZE_SIZE}",
            )
        except ValueError as e:
            raise ConfigError(f"{section}.{e}" if section == "dtm" else f"{section} (over dtm): {e}") from None
        return cfg

    def pretrain_config(self, seed: int, output_dir: str | Path) -> PretrainConfig:
        task_options = self.dtm.get("task_options", {})
        values = {"task": "maze", "task_options": task_options, "seed": seed} | self.pretrain
        values["output_dir"] = str(output_dir)
        try:
            return load_config(PretrainConfig, values)
        except ConfigError as e:
            raise ConfigError(f"pretrain.{e}") from None
