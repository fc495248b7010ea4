"""``dtm study compare``: equal rollout budgets, config errors, the metric helpers against direct computations, and
an end-to-end smoke run of all four methods at a tiny size."""

from __future__ import annotations

import csv
import json
import statistics

import pytest
import torch

from dtm.config import ConfigError, load_config
from dtm.config.sampling import SamplingConfig
from dtm.heldout import diversity, eval_record
from dtm.models import load_model, save_model
from dtm.studies.compare import (
    CompareConfig,
    base_models,
    compute_configs,
    headline_table,
    paired_differences,
    paired_table,
    run_compare,
    run_configs,
    summarize,
)
from dtm.tasks.increment import IncrementTask
from dtm.training import METHODS
from tests.shared import tiny_model


@pytest.fixture(scope="module")
def base_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("base") / "model"
    save_model(tiny_model(0), path)
    return path


def tiny_compare(tmp_path, model_dir, **overrides) -> CompareConfig:
    values = dict(
        output_dir=str(tmp_path / "compare"),
        task="increment",
        base_model=str(model_dir),
        seeds=[0, 1],
        shared={
            "sampling": {"gen_length": 8, "block_length": 4, "decode_steps": 4},
            "micro_batch": 8,
            "prompt_pool": 64,
        },
        method_options={
            # Per phase: 8 x 2 + one refresh of 4 x 2 = 24 rollouts; 2 phases = 48 = 6 baseline steps of 8.
            "dtm": {
                "h": 1.0,
                "a_end": 2.0,
                "steps_per_h": 3,
                "buffer_prompts": 8,
                "buffer_completions": 2,
                "refresh_every": 2,
                "refresh_prompts": 4,
            },
            "diffu_grpo": {"num_generations": 4, "inner_updates": 2},
            "wd1": {"num_generations": 2},
            "spg": {"num_generations": 4},
        },
        curve_points=3,
        curve_prompts=8,
        eval_prompts=8,
        eval_samples=4,
    )
    values.update(overrides)
    return load_config(CompareConfig, values)


def test_every_run_gets_the_same_rollout_budget(tmp_path, base_model):
    cfg = tiny_compare(tmp_path, base_model)
    configs = run_configs(cfg, base_models(cfg, tmp_path), tmp_path)
    assert set(configs) == {(m, s) for m in cfg.methods for s in cfg.seeds}
    assert {run.planned_rollouts for run in configs.values()} == {48}
    assert [configs[m, 0].rollout_batches for m in ("diffu_grpo", "wd1", "spg", "dmpo", "gdsd")] == [6] * 5
    assert configs["dtm", 0].eval_every == 2 and configs["wd1", 0].eval_every == 2  # 6 steps / 3 curve points
    assert configs["spg", 1].seed == 1 and configs["spg", 1].output_dir.endswith("runs/spg/seed1")
    assert all(run.base_model == str(base_model) and run.task == "increment" for run in configs.values())


def test_explicit_budget_without_dtm(tmp_path, base_model):
    cfg = tiny_compare(tmp_path, base_model, methods=["wd1", "spg"], rollouts=64, budgets=["rollouts"])
    configs = run_configs(cfg, base_models(cfg, tmp_path), tmp_path)
    assert configs["wd1", 0].rollout_batches == configs["spg", 0].rollout_batches == 8


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"methods": ["dtm", "ppo"]}, "methods: unknown method 'ppo'"),
        ({"methods": ["wd1", "wd1"]}, "methods: has duplicates"),
        ({"seeds": []}, "seeds: must list at least one seed"),
        (
            {"methods": ["wd1"], "rollouts": 0, "budgets": ["rollouts"]},
            "rollouts: must be set when dtm is not among the methods",
        ),
        ({"shared": {"seed": 3}}, "shared.seed: is set by the comparison"),
        ({"method_options": {"wd1": {"output_dir": "x"}}}, "method_options.wd1.output_dir: is set by the comparison"),
        ({"method_options": {"grpo": {}}}, "method_options: unknown method 'grpo'"),
        ({"shared": {"eval_prompts": 3}}, "shared.eval_prompts: is set by the comparison"),
        (
            {"method_options": {"spg": {"rollout_batches": 9}}},
            r"method_options.spg.rollout_batches: is derived from the rollout budget",
        ),
        ({"base_model": "", "pretrain": {}}, "base_model: give a model folder, or `pretrain` settings"),
        ({"eval_samples": 1}, "eval_samples: must be > 1"),
        ({"budgets": ["time"]}, "budgets: unknown budget 'time'"),
        ({"budgets": ["compute"]}, "budgets: must include rollouts"),
        ({"methods": ["wd1"], "rollouts": 16}, "budgets: compute is DTM's compute"),
    ],
)
def test_bad_comparison_settings_give_one_clear_error(tmp_path, base_model, overrides, message):
    with pytest.raises(ConfigError, match=message):
        tiny_compare(tmp_path, base_model, **overrides)


def test_budget_mismatches_name_the_numbers(tmp_path, base_model):
    with pytest.raises(ConfigError, match="rollouts: is 50 but DTM's config plans 48 rollouts"):
        run_configs(tiny_compare(tmp_path, base_model, rollouts=50), {0: base_model, 1: base_model}, tmp_path)
    cfg = tiny_compare(tmp_path, base_model, methods=["wd1"], rollouts=20, budgets=["rollouts"])
    with pytest.raises(ConfigError, match=r"rollouts: wd1 draws 8 rollouts per step .* must divide the budget of 20"):
        run_configs(cfg, base_models(cfg, tmp_path), tmp_path)
    cfg = tiny_compare(tmp_path, base_model, method_options={"wd1": {"lr_typo": 1.0}})
    with pytest.raises(ConfigError, match=r"training config of wd1 \(shared \+ method_options.wd1\): .*lr_typo"):
        run_configs(cfg, base_models(cfg, tmp_path), tmp_path)


def test_diversity_counts_distinct_and_distinct_correct_per_prompt():
    responses = torch.tensor([[1, 2], [1, 2], [2, 1], [3, 3], [4, 4], [4, 4], [4, 4], [4, 4]])
    correct = torch.tensor([True, True, True, False, True, True, True, True])
    result = diversity(responses, correct, samples=4)
    assert result["distinct"] == pytest.approx((3 / 4 + 1 / 4) / 2)
    assert result["distinct_correct"] == pytest.approx((2 + 1) / 2)


def test_summary_is_mean_and_sample_std_over_seeds_per_budget():
    rows = [
        {"budget": "base", "method": "base", "greedy_reward": 0.5},
        {"budget": "rollouts", "method": "dtm", "greedy_reward": 0.6},
        {"budget": "rollouts", "method": "dtm", "greedy_reward": 0.8},
        {"budget": "rollouts", "method": "dtm", "greedy_reward": 0.7},
        {"budget": "compute", "method": "dtm", "greedy_reward": 0.1},
    ]
    keys = ("greedy_accuracy", "sampled_reward", "sampled_accuracy", "distinct", "distinct_correct", "wall_time")
    for row in rows:
        row.update(dict.fromkeys(keys, 1.0), rollouts=10, compute_tokens=5)
    summary = summarize(rows)
    assert summary["base"]["base"]["seeds"] == 1 and summary["base"]["base"]["greedy_reward_std"] == 0.0
    assert summary["rollouts"]["dtm"]["greedy_reward"] == pytest.approx(0.7)
    assert summary["rollouts"]["dtm"]["greedy_reward_std"] == pytest.approx(statistics.stdev([0.6, 0.8, 0.7]))
    assert summary["compute"]["dtm"]["greedy_reward"] == 0.1


def test_paired_differences_pool_the_bases_of_every_record():
    def row(method: str, seed: int, value: float, budget: str = "rollouts") -> dict:
        keys = ("greedy_reward", "distinct_correct", "sampled_reward")
        return {"budget": budget, "method": method, "seed": seed} | dict.fromkeys(keys, value)

    records = {
        "a": [row("dtm", 0, 0.7), row("grpo", 0, 0.6), row("dtm", 1, 0.5), row("grpo", 1, 0.8), row("dtm", 0, 9, "x")],
        "b": [row("grpo", 0, 0.4), row("dtm", 0, 0.7), row("spg", 0, 0.0)],
    }
    summary = paired_differences(records, "dtm", "grpo")
    diffs = [0.7 - 0.6, 0.5 - 0.8, 0.7 - 0.4]
    for key in ("greedy_reward", "distinct_correct", "sampled_reward"):
        assert summary[key]["mean"] == pytest.approx(sum(diffs) / 3)
        assert summary[key]["std"] == pytest.approx(statistics.stdev(diffs))
        assert (summary[key]["bases"], summary[key]["ahead"]) == (3, 2)
    table = paired_table(summary, "dtm", "grpo")
    assert "| greedy reward | 3 | 0.033 ± 0.306 | 2 |" in table
    with pytest.raises(ValueError, match="b: dtm and grpo must share their seeds"):
        paired_differences({"b": [*records["b"][:1], row("dtm", 1, 0.3)]}, "dtm", "grpo")


def test_headline_table_puts_both_budgets_side_by_side():
    def entry(value: float) -> dict[str, float]:
        keys = ("greedy_reward", "sampled_reward", "distinct_correct")
        return {k: value for k in keys} | {f"{k}_std": value / 10 for k in keys}

    summary = {
        "base": {"base": entry(0.5)},
        "rollouts": {"dtm": entry(0.6), "spg": entry(0.7)},
        "compute": {"dtm": entry(0.6), "spg": entry(0.8)},
    }
    lines = headline_table(summary).splitlines()
    assert lines[0].startswith("| method | greedy reward, equal rollouts | greedy reward, equal compute |")
    assert lines[2] == "| base | " + " | ".join(["0.500 ± 0.050"] * 5) + " |"
    assert lines[4] == "| spg | 0.700 ± 0.070 | 0.800 ± 0.080 | 0.700 ± 0.070 | 0.700 ± 0.070 | 0.800 ± 0.080 |"
    del summary["compute"]
    assert headline_table(summary).splitlines()[0].count("equal compute") == 0


def test_comparison_smoke_run_writes_table_figure_and_both_budgets(tmp_path, base_model):
    cfg = tiny_compare(tmp_path, base_model)
    summary = run_compare(cfg, progress=False)
    out = tmp_path / "compare"
    assert list(summary) == ["base", "rollouts", "compute"]
    assert list(summary["rollouts"]) == list(summary["compute"]) == list(METHODS)
    results = json.loads((out / "results.json").read_text())
    runs = [r for r in results["runs"] if r["budget"] == "rollouts"]
    assert len(runs) == 2 * len(METHODS) and {r["rollouts"] for r in runs} == {48}
    assert all(r["wall_time"] > 0 and 0 <= r["greedy_reward"] <= 1 and 0 < r["distinct"] <= 1 for r in runs)
    assert all(r["compute_tokens"] == r["forward_tokens"] + 2 * r["backward_tokens"] > 0 for r in runs)
    dtm = {r["seed"]: r["compute_tokens"] for r in runs if r["method"] == "dtm"}
    for r in results["runs"]:
        if r["budget"] == "compute" and r["method"] != "dtm":
            same = next(x for x in runs if (x["method"], x["seed"]) == (r["method"], r["seed"]))
            # training compute only (evaluations uncounted), so constant per step for fixed-length prompts
            assert r["compute_tokens"] * same["steps"] == same["compute_tokens"] * r["steps"]
            per_step = same["compute_tokens"] / same["steps"]
            assert abs(r["compute_tokens"] - dtm[r["seed"]]) <= per_step / 2 + 1  # the nearest whole step
            assert r["steps"] == round(dtm[r["seed"]] / per_step)
    for method in cfg.methods:
        assert summary["rollouts"][method]["seeds"] == 2
        curves = results["curves"]["rollouts"][method]
        assert len(curves) == 2 and all(c[0][0] == 0 and c[-1][0] == 48 for c in curves)  # rollouts 0 .. budget
    assert summary["base"]["base"]["seeds"] == 2
    with open(out / "runs.csv") as f:
        assert len(list(csv.DictReader(f))) == 2 + 2 * (2 * len(METHODS))  # bases, then both budgets
    report = (out / "report.md").read_text()
    assert "| dtm | 2 |" in report and "± " in report and "Equal compute" in report
    assert (out / "reward_vs_rollouts.png").stat().st_size > 10_000
    with pytest.raises(FileExistsError):
        run_compare(cfg, progress=False)


def test_a_methods_rows_do_not_depend_on_the_other_methods(tmp_path, base_model):
    """Each run starts from its seed alone, so comparisons of different method sets on the same bases can be joined
    (`dtm merge`) into the table that one comparison of all of them would give."""
    options = {"seeds": [0], "budgets": ["rollouts"]}
    together = tiny_compare(tmp_path / "a", base_model, methods=["dtm", "wd1", "dmpo"], **options)
    alone = tiny_compare(tmp_path / "b", base_model, methods=["dmpo"], rollouts=48, **options)
    together, alone = (run_compare(cfg, progress=False) for cfg in (together, alone))
    timing = {"wall_time", "wall_time_std"}
    for budget, method in (("base", "base"), ("rollouts", "dmpo")):
        kept = {k: v for k, v in together[budget][method].items() if k not in timing}
        assert kept == {k: v for k, v in alone[budget][method].items() if k not in timing}


def test_compute_budget_derives_steps_from_each_equal_rollout_run(tmp_path, base_model):
    cfg = tiny_compare(tmp_path, base_model, methods=["dtm", "wd1"], seeds=[0])
    configs = run_configs(cfg, base_models(cfg, tmp_path), tmp_path)
    rows = [
        {"budget": "rollouts", "method": "dtm", "seed": 0, "compute_tokens": 10_000},
        {"budget": "rollouts", "method": "wd1", "seed": 0, "compute_tokens": 6 * 700},
    ]
    derived = compute_configs(cfg, configs, rows, tmp_path)
    assert list(derived) == [("wd1", 0)]
    assert (
        derived["wd1", 0].rollout_batches == 14 and "runs-compute" in derived["wd1", 0].output_dir
    )  # 10000 / 700 = 14.3


def test_comparison_pretrains_a_base_model_per_seed(tmp_path):
    pretrain = {
        "architecture": {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "intermediate_size": 64},
        "steps": 3,
    }
    cfg = tiny_compare(
        tmp_path, "", pretrain=pretrain, methods=["wd1"], seeds=[0, 1], rollouts=16, budgets=["rollouts"]
    )
    run_compare(cfg, progress=False)
    out = tmp_path / "compare"
    weights = [(out / "bases" / f"seed{s}" / "model" / "model.safetensors").read_bytes() for s in (0, 1)]
    assert weights[0] != weights[1]  # each seed pretrains its own base
    runs = json.loads((out / "results.json").read_text())["runs"]
    assert [(r["method"], r["seed"]) for r in runs] == [("base", 0), ("wd1", 0), ("base", 1), ("wd1", 1)]
    assert runs[1]["rollouts"] == runs[3]["rollouts"] == 16
    with pytest.raises(ConfigError, match=r"pretrain\.steps"):
        run_compare(tiny_compare(tmp_path, "", pretrain={"steps": 0}), overwrite=True, progress=False)


def test_held_out_evaluation_measures_every_seed_on_the_same_prompts(base_model):
    drawn = []

    class RecordingTask(IncrementTask):
        def prompts(self, n, split="train", seed=0):
            drawn.append((n, split, seed))
            return super().prompts(n, split, seed)

    model, task = load_model(base_model), RecordingTask()
    sampling = SamplingConfig(gen_length=8, block_length=4, decode_steps=4)
    results = [eval_record(model, task, 6, sampling, seed=seed) for seed in (0, 1)]
    assert drawn == [(6, "test", 0), (6, "test", 0)]
    assert results[0]["eval_reward_greedy"] == results[1]["eval_reward_greedy"]  # greedy: same prompts, same answers


def test_seeds_in_worker_processes_give_the_same_rows(tmp_path, base_model):
    """Each seed runs with one torch thread, here or in a worker process: the same numbers either way."""
    settings = dict(methods=["wd1"], rollouts=16, budgets=["rollouts"])
    run_compare(tiny_compare(tmp_path / "a", base_model, **settings), progress=False)
    run_compare(tiny_compare(tmp_path / "b", base_model, workers=2, **settings), progress=False)

    def rows(folder):
        runs = json.loads((folder / "compare" / "results.json").read_text())["runs"]
        return [{k: v for k, v in r.items() if k != "wall_time"} for r in runs]

    assert rows(tmp_path / "a") == rows(tmp_path / "b")
