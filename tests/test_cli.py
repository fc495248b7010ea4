"""Tests for the ``dtm`` command line, run in-process through ``dtm.cli.main``."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest
import torch
import yaml

from dtm.cli import main
from dtm.config import load_config
from dtm.config.sampling import SamplingConfig
from dtm.models import load_model
from dtm.rollouts import rollout
from dtm.tasks.increment import IncrementTask
from dtm.training.pretrain import PretrainConfig
from tests.shared import TINY

TINY_YAML = {
    "task": "increment",
    "num_examples": 300,
    "architecture": dataclasses.asdict(TINY),
    "steps": 50,
    "batch_size": 16,
    "seed": 0,
    "output_dir": "this/folder/is/overridden",
}


@pytest.fixture(autouse=True)
def _no_traceback(monkeypatch):
    monkeypatch.delenv("DTM_TRACEBACK", raising=False)


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "pretrain.yaml"
    path.write_text(yaml.safe_dump(TINY_YAML), encoding="utf-8")
    return path


def exit_code(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as info:
        main(argv)
    return info.value.code


def test_pretrain_writes_model(tmp_path, config_file, capsys):
    out = tmp_path / "run"
    main(["pretrain", "--config", str(config_file), f"output_dir={out}", "steps=3", "--no-progress"])
    assert (out / "model" / "config.json").is_file()
    assert f"saved {out / 'model'}" in capsys.readouterr().out
    # the file's settings and the overrides both reached the run
    saved = load_config(PretrainConfig, out / "config.yaml")
    assert saved.steps == 3 and saved.output_dir == str(out)
    assert saved.architecture == TINY and saved.batch_size == 16 and saved.num_examples == 300
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps[-1] == 2
    assert load_model(out / "model").config.hidden_size == TINY.hidden_size


def test_pretrain_existing_output_needs_overwrite(tmp_path, config_file, capsys):
    out = tmp_path / "run"
    argv = ["pretrain", "--config", str(config_file), f"output_dir={out}", "steps=2", "--no-progress"]
    main(argv)
    capsys.readouterr()
    assert exit_code(argv) == 2
    err = capsys.readouterr().err
    assert "dtm pretrain: error:" in err and str(out) in err and "--overwrite" in err
    main([*argv, "--overwrite"])
    assert (out / "model" / "config.json").is_file()


@pytest.mark.parametrize(
    ("override", "bad", "suggestion"),
    [
        ("stpes=3", "stpes", "steps"),
        ("batchsize=8", "batchsize", "batch_size"),
        ("architecture.hiden_size=8", "hiden_size", "hidden_size"),
    ],
)
def test_bad_override_key_exits_2_with_suggestion(tmp_path, config_file, capsys, override, bad, suggestion):
    out = tmp_path / "run"
    assert exit_code(["pretrain", "--config", str(config_file), f"output_dir={out}", override, "--no-progress"]) == 2
    captured = capsys.readouterr()
    assert bad in captured.err
    assert f"did you mean {suggestion!r}" in captured.err
    assert captured.err.startswith("dtm pretrain: error:")
    assert not out.exists()  # nothing ran


def test_bad_override_value_names_the_key(tmp_path, config_file, capsys):
    assert exit_code(["pretrain", "--config", str(config_file), "steps=many", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "steps" in err and "expected int" in err


def test_missing_config_file_exits_2(tmp_path, capsys):
    missing = tmp_path / "nope.yaml"
    assert exit_code(["pretrain", "--config", str(missing), "--no-progress"]) == 2
    assert str(missing) in capsys.readouterr().err


def test_train_missing_base_model_exits_2(tmp_path, capsys):
    base, out = tmp_path / "no-such-model", tmp_path / "dtm"
    assert exit_code(["train", f"base_model={base}", f"output_dir={out}", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dtm train: error:")
    assert "base_model" in err and str(base) in err
    assert not out.exists()


def test_sample_prints_n_lines_and_mean_reward(base_model_dir, capsys):
    main(["sample", "--model", str(base_model_dir), "--task", "increment", "--n", "3"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4
    # an independent decode with the command's defaults (test split, seed 0, block 4, 8 steps, temperature 1)
    task = IncrementTask()
    prompts = task.prompts(3, split="test", seed=0)
    sampling = SamplingConfig(gen_length=task.gen_length, block_length=4, decode_steps=8, temperature=1.0)
    responses = rollout(load_model(base_model_dir), prompts, sampling, torch.Generator().manual_seed(0))
    rewards = task.reward(responses, prompts.meta)
    for line, prompt, response, reward in zip(lines[:3], prompts.ids, responses, rewards, strict=True):
        assert line == f"{task.render(prompt.tolist())} -> {task.render(response.tolist())}  reward={reward:.3f}"
    match = re.fullmatch(r"mean reward (\d+\.\d{3})", lines[3])
    assert match
    assert float(match.group(1)) == pytest.approx(rewards.mean().item(), abs=5e-4)


def test_sample_options(base_model_dir, capsys):
    model = str(base_model_dir)
    main(["sample", "--model", model, "--n", "2", "--seed", "4", "--temperature", "0", "--decode-steps", "2"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3
    test_prompts = IncrementTask().prompts(2, split="test", seed=4)
    for line, prompt in zip(lines, test_prompts.ids, strict=False):
        assert line.startswith(IncrementTask().render(prompt.tolist()) + " -> ")


def test_sample_with_fast_decoding_options(base_model_dir, capsys):
    """Threshold 1 with a dual cache refreshed every round is the exact one-token-per-round sampler."""
    model, common = str(base_model_dir), ["--n", "3", "--seed", "2", "--temperature", "0", "--decode-steps", "8"]
    main(["sample", "--model", model, *common])
    exact = capsys.readouterr().out
    main(["sample", "--model", model, *common, "--threshold", "1.0", "--cache", "dual", "--cache-refresh", "1"])
    assert capsys.readouterr().out == exact
    main(["sample", "--model", model, *common, "--threshold", "0.5", "--cache", "prefix"])
    assert len(capsys.readouterr().out.strip().splitlines()) == 4


def test_sample_errors_exit_2(tmp_path, base_model_dir, capsys):
    missing = tmp_path / "missing-model"
    assert exit_code(["sample", "--model", str(missing), "--n", "1"]) == 2
    assert str(missing) in capsys.readouterr().err
    assert exit_code(["sample", "--model", str(base_model_dir), "--n", "1", "--block-length", "3"]) == 2
    assert "block_length" in capsys.readouterr().err
    assert exit_code(["sample", "--model", str(base_model_dir), "--task", "nope", "--n", "1"]) == 2
    assert "available: increment" in capsys.readouterr().err
    assert exit_code(["sample", "--model", str(base_model_dir), "--n", "1", "--threshold", "1.5"]) == 2
    assert "threshold: must be in (0, 1]" in capsys.readouterr().err
    assert exit_code(["sample", "--model", str(base_model_dir), "--n", "1", "--cache-refresh", "2"]) == 2
    assert "cache_refresh: 2 needs a cache" in capsys.readouterr().err


def test_usage_errors_exit_2(capsys):
    assert exit_code([]) == 2
    assert exit_code(["frobnicate"]) == 2
    assert exit_code(["sample"]) == 2  # --model is required
    assert "model: give the model folder" in capsys.readouterr().err


@pytest.mark.slow
def test_demo_quick_writes_results(tmp_path, capsys):
    out = tmp_path / "demo"
    main(["demo", "--quick", "--output-dir", str(out), "--no-progress"])
    result = json.loads((out / "results.json").read_text())
    assert json.loads(capsys.readouterr().out) == result
    for name in ("base", "dtm"):
        metrics = result[name]
        assert set(metrics) >= {"greedy_reward", "sampled_reward", "valid", "p_increment", "sampled_accuracy"}
        assert all(0 <= metrics[k] <= 1 for k in ("greedy_reward", "sampled_reward", "valid", "sampled_accuracy"))
    task = IncrementTask()
    assert result["exact_p_increment"]["base"] == task.p_increment
    assert result["exact_p_increment"]["dtm"] == pytest.approx(task.tilted_increment_probability(result["a_end"]))
    assert (out / "pretrain" / "model" / "config.json").is_file()
    assert result["dtm"]["sampled_reward"] > result["base"]["sampled_reward"]  # tilting towards the reward raises it


def test_overrides_after_options_are_applied(tmp_path, config_file, capsys):
    out = tmp_path / "run"
    main(["pretrain", "--config", str(config_file), "--no-progress", f"output_dir={out}", "steps=2"])
    assert load_config(PretrainConfig, out / "config.yaml").steps == 2
    assert exit_code(["pretrain", "--config", str(config_file), "--no-progress", "--bogus"]) == 2
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err


@pytest.mark.parametrize("method", ["dtm", "wd1", "dmpo", "gdsd"])
def test_train_command_runs_the_method_of_the_config(base_model_dir, tmp_path, capsys, method):
    out = tmp_path / method
    common = [f"base_model={base_model_dir}", f"output_dir={out}", "seed=0", "--no-progress"]
    if method == "dtm":
        extra = ["a_end=1", "h=1", "steps_per_h=2", "buffer_prompts=8", "prompt_pool=16", "refresh_prompts=0"]
        extra += ["micro_batch=8", "eval_prompts=0"]
    else:
        extra = ["rollout_batches=2", "num_generations=2", "micro_batch=8", "eval_prompts=0", "prompt_pool=16"]
    main(["train", f"method={method}", *common, *extra])
    assert f"saved {out / 'final' / 'model'}" in capsys.readouterr().out
    assert yaml.safe_load((out / "config.yaml").read_text())["method"] == method
    assert exit_code(["train", "method=ppo", *common]) == 2
    assert "method" in capsys.readouterr().err
