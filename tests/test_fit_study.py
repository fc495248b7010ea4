"""The fit study (``dtm study fit``): bad settings fail before training, a tiny run measures what it says."""

from __future__ import annotations

import json

import pytest

from dtm.config import ConfigError, load_config
from dtm.studies.fit import FitStudyConfig, first_phase_end, plot_reach_vs_draws, run_fit_study

SAMPLING = {"gen_length": 8, "block_length": 4, "decode_steps": 8, "temperature": 1.0, "remasking": "random"}


def tiny_study(tmp_path, **overrides) -> dict:
    values = {
        "output_dir": str(tmp_path / "fit"),
        "seeds": [0, 1],
        "pretrain": {
            "architecture": {
                "hidden_size": 32,
                "num_layers": 2,
                "num_heads": 2,
                "intermediate_size": 64,
                "max_length": 64,
            },
            "steps": 40,
            "num_examples": 2000,
        },
        "dtm": {
            "task_options": {"size": 3, "extra_openings": 3, "gen_length": 8},
            "sampling": SAMPLING,
            "h": 2.0,
            "a_end": 4.0,
            "steps_per_h": 4,
            "buffer_prompts": 8,
            "buffer_completions": 2,
            "refresh_every": 0,
            "refresh_prompts": 4,
            "micro_batch": 8,
            "lr": 1e-3,
        },
        "variants": {"c1": {}, "baseline": {"prompt_baseline": True}},
        "train_mazes": 3,
        "heldout_mazes": 3,
        "measure_every": 2,
        "invalid_samples": 4,
    }
    values.update(overrides)
    return values


def test_tiny_run_measures_every_phase_of_every_variant_and_seed(tmp_path):
    cfg = load_config(FitStudyConfig, tiny_study(tmp_path))
    summary = run_fit_study(cfg, progress=False)
    out = tmp_path / "fit"
    saved = json.loads((out / "results.json").read_text())
    assert set(summary) == {"c1", "baseline"} and summary == saved["summary"]
    assert [(run["variant"], run["seed"]) for run in saved["runs"]] == [
        ("c1", 0),
        ("baseline", 0),
        ("c1", 1),
        ("baseline", 1),
    ]
    for run in saved["runs"]:
        records = run["records"]
        # Per phase: the start (the teacher itself), step 2 and the phase end.
        assert [(r["phase"], r["in_phase"]) for r in records] == [(p, k) for p in (0, 1) for k in (0, 2, 4)]
        assert [r["a"] for r in records] == [0.0] * 3 + [2.0] * 3
        for r in records:
            assert r["states"] == r["step"] * 8
            for split in ("train", "heldout"):
                assert 0 <= r[f"{split}_tv_target"] <= 1 and 0 <= r[f"{split}_tv_rho"] <= 1
                assert r[f"{split}_loss_gain_max"] > 0
                assert r[f"{split}_target_reward"] >= r[f"{split}_reward"] - 1e-9 or r["in_phase"]
            if r["in_phase"] == 0:  # the student is the teacher: no gain, no tilt, at its start distance
                for split in ("train", "heldout"):
                    assert r[f"{split}_loss_gain"] == 0.0 and abs(r[f"{split}_h_eff"]) < 1e-9
                    assert r[f"{split}_tv_target"] == r[f"{split}_tv_start"]
        # Phase 0's rho target is the base tilted by h: the same as the phase's own target.
        assert records[2]["heldout_tv_rho"] == pytest.approx(records[2]["heldout_tv_target"], abs=1e-12)
    # Both variants start from the same base model: identical phase-0 start measurements.
    first = {run["variant"]: run["records"][0] for run in saved["runs"] if run["seed"] == 0}
    assert first["c1"]["heldout_tv_start"] == first["baseline"]["heldout_tv_start"]
    phases = summary["c1"]["phases"]
    assert [p["phase"] for p in phases] == [0, 1] and summary["c1"]["seeds"] == [0, 1]
    assert phases[0]["heldout_h_eff_ratio"]["std"] >= 0
    assert (out / "fit_vs_step.png").stat().st_size > 1000
    assert (out / "fit_vs_draws.png").stat().st_size > 1000
    for run in saved["runs"]:  # the draws figure's point of a run: the end of its first phase
        end = first_phase_end(run)
        assert (end["phase"], end["in_phase"]) == (0, 4) and end is run["records"][2]
    report = (out / "report.md").read_text()
    assert "| c1 |" in report and "| baseline |" in report and "TV to rho_a" in report
    header = (out / "fit.csv").read_text().splitlines()[0]
    assert header.startswith("variant,seed,phase,a,h,step,in_phase,states,rollouts")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"dtm": {"sampling": {**SAMPLING, "remasking": "low_confidence"}}}, "remasking must be 'random'"),
        ({"dtm": {"sampling": {**SAMPLING, "decode_steps": 4}}}, "steps must equal gen_length"),
        ({"dtm": {"task": "increment"}}, "dtm.task: the fit study needs the maze task"),
        ({"dtm": {"output_dir": "x"}}, "dtm.output_dir: is set by the study"),
        ({"variants": {"v": {"seed": 3}}}, "variants.v.seed: is set by the study"),
        ({"variants": {"v": {"h": -1.0}}}, "variants.v (over dtm): h: must be > 0"),
        ({"dtm": {"h": 0.0}, "variants": {}}, "dtm.h: must be > 0"),
        ({"dtm": {"task_options": {"size": 6}}}, "task_options.size: a 6x6 maze has too many paths"),
        ({"pretrain": {"steps": 0}}, "pretrain.steps"),
        ({"base_model": "", "pretrain": {}}, "base_model: give a model folder"),
        ({"base_model": "nowhere/seed{seed}"}, "no model checkpoint at nowhere/seed0"),
        ({"seeds": []}, "seeds"),
        ({"invalid_samples": 0}, "invalid_samples"),
    ],
)
def test_bad_settings_fail_before_anything_runs(tmp_path, override, message):
    values = tiny_study(tmp_path)
    for key, value in override.items():
        values[key] = {**values[key], **value} if isinstance(value, dict) and key in ("dtm",) else value
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        run_fit_study(load_config(FitStudyConfig, values), progress=False)
    assert not (tmp_path / "fit").exists()


def test_reach_figure_takes_variants_that_tie_on_draws_per_rollout(tmp_path):
    record = {"phase": 0, "in_phase": 4, "states": 64, "rollouts": 16, "h": 3.0}
    runs = [
        {"variant": name, "records": [record | {"heldout_h_eff": eff, "train_h_eff": 2 * eff}]}
        for name, eff in (("lr 1e-4", 0.3), ("lr 3e-4", 0.6))
    ]
    plot_reach_vs_draws(tmp_path / "fit_vs_draws.png", runs)
    assert (tmp_path / "fit_vs_draws.png").stat().st_size > 0
