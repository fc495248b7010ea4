"""Settings of ``dtm study maze`` (``configs/maze-study.yaml``, the main job): annealing step h and control variate c
against reward, stability and mode collapse."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

from dtm.config.fields import setting
from dtm.config.loader import check
from dtm.config.model import TinyModelConfig
from dtm.config.sampling import SamplingConfig
from dtm.config.studies import check_seeds

# Keys every arm sets itself.
ARM_KEYS = ("h", "a_end", "steps_per_h", "control_variate", "adaptive_c", "output_dir", "seed", "base_model")


@dataclass
class MazeStudyConfig:
    """Settings of the maze study (``configs/maze-study.yaml``: the main job; see the README for its run time)."""

    renamed_keys: ClassVar[dict[str, str]] = {"model": "architecture"}

    output_dir: str = setting("runs/maze-study", "study folder: every run, results.json, report.md, figures")
    seeds: list[int] = setting(factory=lambda: [0, 1, 2], help="seeds (each pretrains its own base model)")
    workers: int = setting(1, "seeds run side by side in this many processes (one torch thread each; same numbers)")
    maze_size: int = setting(3, "mazes are size x size cells")
    maze_extra_openings: int = setting(3, "walls removed beyond a spanning tree (loops: several shortest paths)")
    architecture: TinyModelConfig = setting(
        factory=lambda: TinyModelConfig(hidden_size=128, num_layers=4, intermediate_size=256, max_length=64),
        help="shape of the base model, pretrained once per seed",
    )
    base_model: str = setting(
        "",
        "a base model folder per seed ({seed} in the path, e.g. an earlier study's seed{seed}/base/model) instead of "
        "pretraining one (architecture and pretraining keys are then unused)",
    )
    pretrain_steps: int = setting(1200, "pretraining steps of each base model")
    pretrain_lr: float = setting(2e-3, "pretraining peak learning rate")
    a_end: float = setting(12.0, "final tilt of every DTM arm")
    small_h: float = setting(3.0, "h of the many-phase arms (a_end / small_h phases; the other arms use one phase)")
    total_steps: int = setting(240, "optimizer steps of every arm, split equally over its phases")
    controls: list[str] = setting(
        factory=lambda: ["1", "adaptive"], help='control variates c compared: numbers, or "adaptive"'
    )
    lr: float = setting(1e-3, "DTM peak learning rate")
    buffer_prompts: int = setting(64, "DTM replay-buffer prompts")
    buffer_completions: int = setting(8, "DTM rollouts per buffer prompt")
    micro_batch: int = setting(32, "DTM sequences per forward/backward pass")
    dtm: dict[str, Any] = setting(
        factory=dict, help="further DTMConfig keys for every arm (e.g. grad_accum, lr_decay, ema, refresh_every)"
    )
    sampling: SamplingConfig = setting(
        factory=lambda: SamplingConfig(gen_length=8, block_length=4, decode_steps=8, remasking="random"),
        help="decoding; random-order unmasking samples the model's own path law (confidence order does not)",
    )
    rollout_decoding: dict[str, Any] = setting(
        factory=dict,
        help="sampling keys the arms' rollouts use instead (e.g. threshold, cache): the replay buffer comes from that "
        "decoder, while held-out metrics and exact laws keep sampling's",
    )
    eval_mazes: int = setting(64, "held-out mazes of the sampled metrics")
    samples_per_maze: int = setting(8, "samples per held-out maze")
    tv_mazes: int = setting(16, "distinct held-out mazes whose exact path laws give the total variation to the target")

    def __post_init__(self) -> None:
        check_seeds(self.seeds, self.workers)
        check(self.a_end >= self.small_h > 0, "small_h", f"must be in (0, a_end={self.a_end}], got {self.small_h}")
        phases = math.ceil(self.a_end / self.small_h - 1e-9)
        check(
            self.total_steps % phases == 0,
            "total_steps",
            f"must be a multiple of the {phases} small-h phases, got {self.total_steps}",
        )
        check(bool(self.controls), "controls", "must list at least one control variate")
        for c in self.controls:
            check(c == "adaptive" or _is_float(c), "controls", f"entries must be numbers or 'adaptive', got {c!r}")
        for key in ARM_KEYS:
            check(key not in self.dtm, f"dtm.{key}", "is set by each arm; remove it")
        check(self.tv_mazes > 0, "tv_mazes", f"must be positive, got {self.tv_mazes}")

    @property
    def task_options(self) -> dict[str, int]:
        return {
            "size": self.maze_size,
            "extra_openings": self.maze_extra_openings,
            "gen_length": self.sampling.gen_length,
        }


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
