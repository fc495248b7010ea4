"""`dtm sft`: masked-diffusion SFT of a model folder on text tasks' demonstrations, on the built-in model with the
character tokenizer (a chat template and a mask token)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dtm.cli import main
from dtm.config import ConfigError, load_config
from dtm.config.sft import SFTConfig
from dtm.models import load_model, load_tokenizer
from dtm.training.sft import sft
from tests.hf_fixtures import builtin_model_folder, char_tokenizer
from tests.shared import read_metrics

GSM8K_FILE = Path(__file__).parent / "fixtures" / "text" / "gsm8k.jsonl"
TASKS = {"countdown": {"source": "generate", "style": "chat"}, "gsm8k": {"source": str(GSM8K_FILE), "style": "chat"}}


def config(tmp_path: Path, **overrides) -> SFTConfig:
    values = dict(
        base_model=str(builtin_model_folder(tmp_path / "base")),
        tasks=TASKS,
        examples_per_task=16,
        response_length=48,
        steps=3,
        batch_size=4,
        lr=1e-3,
        output_dir=str(tmp_path / "sft"),
    )
    return SFTConfig(**values | overrides)


def test_sft_saves_a_model_with_its_tokenizer_and_summarises_the_data(tmp_path):
    cfg = config(tmp_path)
    sft(cfg, progress=False)
    out = Path(cfg.output_dir)
    tokenizer = load_tokenizer(out / "model")
    assert tokenizer.get_vocab() == char_tokenizer().get_vocab() and tokenizer.chat_template
    model = load_model(out / "model", tokenizer=tokenizer)
    assert model.mask_token_id == tokenizer.mask_token_id
    assert [r["step"] for r in read_metrics(out)] == [0, 1, 2]
    data = json.loads((out / "data.json").read_text())
    assert data["countdown"]["drawn"] == data["countdown"]["kept"] == 16
    # The fixture file holds 3 problems; a demonstration longer than response_length is left out.
    assert data["gsm8k"]["drawn"] == 3 and data["gsm8k"]["kept"] < 3 and data["gsm8k"]["longest_response"] > 48
    assert load_config(SFTConfig, out / "config.yaml") == cfg


def test_the_same_seed_gives_the_same_weights(tmp_path):
    weights = []
    for run in ("a", "b"):
        cfg = config(tmp_path / run, seed=3)
        weights.append(sft(cfg, progress=False).state_dict())
    for name, value in weights[0].items():
        torch.testing.assert_close(value, weights[1][name])


def test_sft_lowers_the_loss(tmp_path):
    tasks = {"countdown": TASKS["countdown"]}
    cfg = config(tmp_path, tasks=tasks, steps=60, batch_size=8, response_length=64, lr=3e-3, lr_min=3e-4)
    sft(cfg, progress=False)
    losses = [r["loss"] for r in read_metrics(Path(cfg.output_dir))]
    assert sum(losses[-10:]) < 0.8 * sum(losses[:10])  # measured: 0.65


def test_data_that_cannot_be_learnt_fails_before_the_run_folder_is_made(tmp_path):
    cfg = config(tmp_path, response_length=4)
    with pytest.raises(ValueError, match="no demonstration fits response_length"):
        sft(cfg, progress=False)
    assert not Path(cfg.output_dir).exists()
    with pytest.raises(ConfigError, match="tasks: 'maze' is not a text task"):
        config(tmp_path, tasks={"maze": {}})


def test_sft_command(tmp_path, capsys):
    base = builtin_model_folder(tmp_path / "base")
    out = tmp_path / "run"
    args = ["sft", f"base_model={base}", f"output_dir={out}", "steps=1", "batch_size=2", "examples_per_task=4"]
    main([*args, "tasks={countdown: {source: generate}}", "response_length=96", "--no-progress"])
    assert f"saved {out / 'model'}" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["sft", f"base_model={tmp_path / 'missing'}"])
    assert "no model checkpoint" in capsys.readouterr().err
