"""Settings of ``dtm study decoding`` (``configs/decoding-study.yaml``): fast decoders against the exact sampler."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dtm.config.fields import setting
from dtm.config.loader import ConfigError, check, load_config
from dtm.config.sampling import SamplingConfig

DECODER_KEYS = ("threshold", "cache", "cache_refresh")
MODEL_KEYS = ("task", "task_options", "path", "sampling")


def _default_models() -> dict[str, dict[str, Any]]:
    maze = {"task": "maze", "task_options": {"size": 3, "extra_openings": 3, "gen_length": 8}}
    maze_sampling = {"gen_length": 8, "block_length": 4, "decode_steps": 8, "remasking": "random"}
    return {
        "maze base": maze | {"path": "runs/maze-study/seed{seed}/base/model", "sampling": maze_sampling},
        "maze DTM": maze
        | {"path": "runs/maze-study/seed{seed}/arms/small-h_c1/final/model", "sampling": maze_sampling},
        "sudoku base": {
            "task": "sudoku_digits",
            "path": "runs/sudoku-bases/seed{seed}/model",
            "sampling": {"gen_length": 16, "block_length": 4, "decode_steps": 16, "remasking": "random"},
        },
    }


def _default_decoders() -> dict[str, dict[str, Any]]:
    return {
        "threshold 0.9": {"threshold": 0.9},
        "threshold 0.7": {"threshold": 0.7},
        "prefix cache": {"cache": "prefix"},
        "dual cache": {"cache": "dual"},
        "threshold 0.9 + dual": {"threshold": 0.9, "cache": "dual"},
    }


@dataclass
class DecodingStudyConfig:
    """Settings of the decoding study (``configs/decoding-study.yaml``)."""

    output_dir: str = setting("runs/decoding-study", "study folder: results.json, report.md")
    seeds: list[int] = setting(factory=lambda: [0, 1, 2], help="seeds: each model path's {seed}, and the sampling seed")
    workers: int = setting(1, "seeds run side by side in this many processes (one torch thread each; same numbers)")
    models: dict[str, dict[str, Any]] = setting(
        factory=_default_models,
        help="name -> {task, task_options, path (with {seed}), sampling (the exact sampler: one token per round)}",
    )
    decoders: dict[str, dict[str, Any]] = setting(
        factory=_default_decoders, help="name -> the sampling keys it changes (threshold, cache, cache_refresh)"
    )
    eval_prompts: int = setting(256, "held-out prompts decoded greedily and sampled once by every decoder")
    tv_mazes: int = setting(16, "distinct held-out mazes whose exact laws give the TV (maze models only)")

    def __post_init__(self) -> None:
        check(bool(self.seeds), "seeds", "must list at least one seed")
        check(self.workers >= 1, "workers", f"must be >= 1, got {self.workers}")
        check(bool(self.models), "models", "must name at least one model")
        for name, entry in self.models.items():
            unknown = set(entry) - set(MODEL_KEYS)
            check(not unknown, f"models.{name}", f"unknown keys {sorted(unknown)}; valid: {', '.join(MODEL_KEYS)}")
            check("task" in entry and "path" in entry, f"models.{name}", "needs task and path")
            self.reference(name)
        check("exact" not in self.decoders, "decoders", "'exact' names the reference row; choose another name")
        for name, changes in self.decoders.items():
            unknown = set(changes) - set(DECODER_KEYS)
            check(not unknown, f"decoders.{name}", f"unknown keys {sorted(unknown)}; valid: {', '.join(DECODER_KEYS)}")
            for model in self.models:
                self.decoder(model, name)
        check(self.eval_prompts > 0, "eval_prompts", f"must be positive, got {self.eval_prompts}")
        check(self.tv_mazes > 0, "tv_mazes", f"must be positive, got {self.tv_mazes}")

    def reference(self, model: str) -> SamplingConfig:
        """The exact sampler of ``model`` (its ``sampling``, at temperature 1)."""
        try:
            return load_config(SamplingConfig, dict(self.models[model].get("sampling", {})) | {"temperature": 1.0})
        except ConfigError as e:
            raise ConfigError(f"models.{model}.sampling: {e}") from None

    def decoder(self, model: str, name: str) -> SamplingConfig:
        try:
            return load_config(SamplingConfig, self.reference(model).__dict__ | self.decoders[name])
        except ConfigError as e:
            raise ConfigError(f"decoders.{name} (with models.{model}.sampling): {e}") from None
