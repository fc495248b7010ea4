"""``dtm export``: a finished run becomes a folder that loads to the same model, with a model card that states the
base model, the method and its settings, the data, the evaluations and how to load and rerun it."""

from __future__ import annotations

import json

import pytest
import torch
from huggingface_hub import ModelCard

from dtm.cli import main
from dtm.config import load_config
from dtm.config.evaluation import EvalConfig
from dtm.config.run import LoraSection
from dtm.evaluation import run_eval
from dtm.export import export_run
from dtm.models import load_model
from dtm.training import load_train_config
from dtm.training.dtm import DTMConfig, DTMTrainer
from tests.shared import one_phase_config, read_metrics


def train(base_model_dir, out, **overrides) -> DTMConfig:
    cfg = one_phase_config(out, base_model_dir, **overrides)
    DTMTrainer(cfg, progress=False).train()
    return cfg


@pytest.fixture(scope="module")
def full_run(base_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("full") / "run"
    return train(base_model_dir, out), out


def logits(model) -> torch.Tensor:
    ids = torch.arange(10).view(1, 10) % model.model.config.vocab_size
    with torch.no_grad():
        return model(ids)


def test_exported_model_loads_to_the_trained_one_and_the_card_describes_the_run(full_run, tmp_path):
    cfg, run = full_run
    evaluation = tmp_path / "eval"
    run_eval(
        EvalConfig(
            model=str(run / "final" / "model"),
            task="increment",
            gen_lengths=[8],
            block_length=8,
            num_examples=8,
            output_dir=str(evaluation),
        ),
        progress=False,
    )
    out = export_run(run, tmp_path / "export", evals=[evaluation])
    torch.testing.assert_close(logits(load_model(out)), logits(load_model(run / "final" / "model")), rtol=0, atol=0)
    assert load_train_config(out / "training_config.yaml") == cfg
    card = ModelCard.load(out / "README.md")
    assert {"dtm", "masked-diffusion"} <= set(card.data.tags) and card.data.library_name == "transformers"
    assert card.data.base_model is None  # a local folder is not a Hub id
    text = card.text
    assert f"`{cfg.base_model}` (a local folder)" in text and "Discrete Tilt Matching (DTM)" in text
    final = next(r for r in read_metrics(run) if r.get("eval") == "final")
    assert f"| this model | {final['eval_reward_greedy']:.3f} | {final['eval_accuracy_greedy']:.3f} |" in text
    assert f"decode_steps {cfg.sampling.decode_steps}" in text and "a_end: 1.0" in text
    assert (evaluation / "results.md").read_text().strip() in text
    assert "rollouts" in text and "dtm train --config training_config.yaml" in text


def test_lora_run_exports_its_adapter_with_the_base_named(base_model_dir, tmp_path):
    run = tmp_path / "run"
    train(base_model_dir, run, finetune="lora", lora=LoraSection(r=4, alpha=8), eval_prompts=0)
    out = export_run(run, tmp_path / "adapter", adapter=True)
    assert json.loads((out / "adapter_config.json").read_text())["r"] == 4
    card = ModelCard.load(out / "README.md")
    assert card.data.library_name == "peft" and "LoRA adapter (peft) of the base model" in card.text
    assert "logged no held-out evaluation" in card.text


def test_bad_exports_fail_before_writing_anything(full_run, tmp_path, capsys):
    cfg, run = full_run
    with pytest.raises(ValueError, match=r"finetune: full.*has no adapter"):
        export_run(run, tmp_path / "a", adapter=True)
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "config.yaml").write_text((run / "config.yaml").read_text())
    with pytest.raises(FileNotFoundError, match=r"the run has not finished.*--resume"):
        export_run(unfinished, tmp_path / "b")
    with pytest.raises(FileNotFoundError, match=r"--eval: .*results.md not found"):
        export_run(run, tmp_path / "c", evals=[tmp_path])
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("x")
    with pytest.raises(SystemExit):
        main(["export", str(run), str(taken)])
    assert "not empty; pass --overwrite" in capsys.readouterr().err
    assert not any((tmp_path / name).exists() for name in "abc") and (taken / "keep.txt").exists()
    main(["export", str(run), str(taken), "--overwrite"])
    assert not (taken / "keep.txt").exists() and load_config(DTMConfig, taken / "training_config.yaml") == cfg
