"""The maze study: metric functions against direct computations, and an end-to-end smoke run at a tiny size."""

from __future__ import annotations

import json
import math

import pytest

from dtm.config import ConfigError
from dtm.config.sampling import SamplingConfig
from dtm.models import TinyModelConfig
from dtm.studies.maze import COLUMNS, TIMINGS, MazeStudyConfig, arms, run_maze_study
from dtm.studies.metrics import empirical, entropy, tilt, total_variation


def test_empirical_entropy_and_total_variation():
    dist = empirical(["a", "b", "a", "c"])
    assert dist == {"a": 0.5, "b": 0.25, "c": 0.25}
    assert entropy(dist) == pytest.approx(-(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25)))
    assert total_variation(dist, {"a": 1.0}) == pytest.approx(0.5)
    assert total_variation(dist, {"d": 1.0}) == pytest.approx(1.0)
    assert total_variation(dist, dist) == 0.0


def test_tilt_matches_direct_formula_and_is_stable():
    dist = {"x": 0.2, "y": 0.5, "z": 0.3}
    rewards = {"x": 1.0, "y": 0.0, "z": 0.5}
    a = 3.0
    z = sum(p * math.exp(a * rewards[k]) for k, p in dist.items())
    expected = {k: p * math.exp(a * rewards[k]) / z for k, p in dist.items()}
    assert tilt(dist, rewards, a) == pytest.approx(expected)
    huge = tilt(dist, rewards, 5000.0)  # exp(5000) overflows without the max shift
    assert huge["x"] == pytest.approx(1.0)


def test_arms_cover_schedules_and_controls_with_equal_steps(tmp_path):
    cfg = MazeStudyConfig(
        a_end=6.0, small_h=2.0, total_steps=30, controls=["0", "1", "adaptive"], dtm={"grad_accum": 2, "lr_decay": 0.5}
    )
    configs = arms(cfg, tmp_path, seed=3)
    assert len(configs) == 6
    for name, arm in configs.items():
        assert arm.total_steps == 30 and arm.a_end == 6.0 and arm.seed == 3
        assert arm.h == (2.0 if name.startswith("small-h") else 6.0)
        assert arm.adaptive_c == name.endswith("adaptive")
        assert arm.grad_accum == 2 and arm.lr_decay == 0.5  # the shared `dtm` keys reach every arm


def test_rollout_decoding_reaches_the_arms_rollouts_only(tmp_path):
    cfg = MazeStudyConfig(controls=["1"], rollout_decoding={"threshold": 0.9, "cache": "dual"})
    for arm in arms(cfg, tmp_path, seed=0).values():
        assert arm.sampling.threshold == 0.9 and arm.sampling.cache == "dual"
        assert arm.sampling.remasking == cfg.sampling.remasking == "random"
    assert cfg.sampling.threshold is None and cfg.sampling.cache == "none"  # held-out metrics and laws: exact
    bad = MazeStudyConfig(rollout_decoding={"threshold": 2.0})
    with pytest.raises(ConfigError, match=r"sampling\.threshold: must be in \(0, 1\]"):
        arms(bad, tmp_path, seed=0)


def test_study_config_validation(tmp_path):
    with pytest.raises(ConfigError, match="total_steps"):
        MazeStudyConfig(a_end=6.0, small_h=2.0, total_steps=31)
    with pytest.raises(ConfigError, match="controls"):
        MazeStudyConfig(controls=["one"])
    with pytest.raises(ConfigError, match=r"dtm\.h: is set by each arm"):
        MazeStudyConfig(dtm={"h": 1.0})
    with pytest.raises(ConfigError, match="seeds: has duplicates"):
        MazeStudyConfig(seeds=[1, 1])
    bad = MazeStudyConfig(output_dir=str(tmp_path / "study"), dtm={"ema": 2.0})
    with pytest.raises(ConfigError, match=r"dtm \(the arms' DTM settings\): ema"):
        run_maze_study(bad, progress=False)
    assert not (tmp_path / "study").exists()


def tiny_study(tmp_path, **overrides) -> MazeStudyConfig:
    values = dict(
        output_dir=str(tmp_path / "study"),
        seeds=[0, 1],
        architecture=TinyModelConfig(hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64, max_length=64),
        pretrain_steps=20,
        a_end=2.0,
        small_h=1.0,
        total_steps=4,
        controls=["1", "adaptive"],
        buffer_prompts=8,
        buffer_completions=2,
        micro_batch=8,
        sampling=SamplingConfig(gen_length=8, block_length=4, decode_steps=8, remasking="random", decode_batch=256),
        eval_mazes=4,
        samples_per_maze=4,
        tv_mazes=2,
    )
    values.update(overrides)
    return MazeStudyConfig(**values)


def test_study_smoke_run_writes_every_output(tmp_path):
    cfg = tiny_study(tmp_path)
    summary = run_maze_study(cfg, progress=False)
    out = tmp_path / "study"
    assert set(summary) == {"base"} | {f"{s} c={c}" for s in ("small-h", "one-phase") for c in ("1", "adaptive")}
    saved = json.loads((out / "results.json").read_text())
    assert saved["summary"] == json.loads(json.dumps(summary))
    assert [run["seed"] for run in saved["runs"]] == [0, 1]
    for run in saved["runs"]:
        for name, row in run["results"].items():
            bounded = ("success", "sampled_reward", "sampled_accuracy", "shortest_found", "tv_to_target")
            for key in (*bounded, "exact_reward", "greedy_reward"):
                assert 0.0 <= row[key] <= 1.0, (name, key)
            assert row["sampled_accuracy"] <= row["success"]
            assert row["exact_reward"] <= row["target_reward"] + 1e-9 or name != "base"
            if name != "base":
                assert row["rollouts"] > 0 and row["grad_norm_var"] >= 0 and row["compute_tokens"] > 0
                assert row["train_seconds"] > row["rollout_seconds"] > 0
                assert row["rollout_passes"] == 8 and row["rollout_positions"] > 8 * 8  # one token per round
        assert len(run["curves"]["small-h c=1"]["curve_step"]) == 4
    for name, entry in summary.items():
        values = [run["results"][name]["sampled_reward"] for run in saved["runs"]]
        assert entry["sampled_reward"]["mean"] == pytest.approx(sum(values) / 2)
        assert entry["sampled_reward"]["std"] == pytest.approx(abs(values[0] - values[1]) / math.sqrt(2))
    rows = (out / "results.csv").read_text().splitlines()
    assert rows[0].split(",") == ["arm", "seed"] + [key for key, _ in COLUMNS] and len(rows) == 1 + 2 * 5
    for figure in ("reward_vs_step.png", "diversity_vs_reward.png", "tv_to_target.png"):
        assert (out / figure).stat().st_size > 1000
    assert "| small-h c=1 |" in (out / "report.md").read_text()
    assert (out / "seed1" / "result.json").exists()


def test_seeds_give_the_same_numbers_alone_or_in_parallel_workers(tmp_path):
    """Every seed runs with one torch thread, in this process or in a worker: identical results."""
    alone = run_maze_study(tiny_study(tmp_path / "a", seeds=[1], controls=["1"]), progress=False)
    parallel = run_maze_study(tiny_study(tmp_path / "b", seeds=[0, 1], controls=["1"], workers=2), progress=False)
    runs = json.loads((tmp_path / "b" / "study" / "results.json").read_text())["runs"]
    assert [run["seed"] for run in runs] == [0, 1]
    single = json.loads((tmp_path / "a" / "study" / "results.json").read_text())["runs"][0]
    assert untimed(runs[1]["results"]) == untimed(single["results"])
    assert set(alone) == set(parallel)


def untimed(results: dict) -> dict:
    """Per-arm results without the wall times."""
    return {arm: {k: v for k, v in row.items() if k not in TIMINGS} for arm, row in results.items()}


def test_a_given_base_model_replaces_pretraining_with_the_same_numbers(tmp_path):
    """An earlier study's base models, loaded from disk, give that study's numbers (fast rollouts are compared with
    exact ones on the same bases this way); a missing base stops the study before anything runs."""
    first = run_maze_study(tiny_study(tmp_path / "a", seeds=[1], controls=["1"]), progress=False)
    base = str(tmp_path / "a" / "study" / "seed{seed}" / "base" / "model")
    run_maze_study(tiny_study(tmp_path / "b", seeds=[1], controls=["1"], base_model=base), progress=False)
    runs = [json.loads((tmp_path / x / "study" / "results.json").read_text())["runs"][0] for x in ("a", "b")]
    assert untimed(runs[1]["results"]) == untimed(runs[0]["results"])
    assert set(first) == {"base", "small-h c=1", "one-phase c=1"}
    assert not (tmp_path / "b" / "study" / "seed1" / "base").exists()
    with pytest.raises(ConfigError, match=r"base_model: no model checkpoint at .*seed0"):
        run_maze_study(tiny_study(tmp_path / "c", seeds=[0], base_model=base), progress=False)
