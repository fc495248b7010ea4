"""Tests for dtm.training.pretrain: masked-diffusion pretraining of the built-in model on a token task."""

from __future__ import annotations

import math
import re

import pytest
import torch

from dtm.config import ConfigError, load_config
from dtm.config.sampling import SamplingConfig
from dtm.models import TinyModelConfig, build_tiny_model, load_model
from dtm.rollouts import rollout
from dtm.tasks.increment import IncrementTask
from dtm.training.data import TokenDataset, from_task
from dtm.training.pretrain import PretrainConfig, pretrain
from dtm.training.schedule import lr_at
from tests.shared import TINY, read_metrics

TRAIN_STEPS = 120


def tiny_config(out, **overrides) -> PretrainConfig:
    settings = dict(
        architecture=TINY, num_examples=2000, batch_size=32, lr=5e-3, lr_min=5e-4, log_every=10, output_dir=str(out)
    )
    settings.update(overrides)
    return PretrainConfig(**settings)


def validity(model, task: IncrementTask, n: int = 256, seed: int = 0) -> float:
    prompts = task.prompts(n, split="test", seed=seed)
    responses = rollout(model, prompts, SamplingConfig(gen_length=task.gen_length), torch.Generator().manual_seed(seed))
    assert responses.shape == (n, task.gen_length)
    return task.is_valid(responses, prompts.meta).float().mean().item()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One short pretraining run shared by the tests that inspect its outputs."""
    out = tmp_path_factory.mktemp("pretrain") / "run"
    cfg = tiny_config(out, steps=TRAIN_STEPS, seed=0)
    model = pretrain(cfg, progress=False)
    return cfg, out, model


def test_pretraining_lowers_the_loss(trained):
    cfg, out, _ = trained
    records = read_metrics(out)
    steps = [r["step"] for r in records]
    assert steps == [*range(0, TRAIN_STEPS, cfg.log_every), TRAIN_STEPS - 1]
    for r in records:
        assert r["lr"] == lr_at(r["step"], cfg.steps, cfg.lr, cfg.lr_min, cfg.lr_warmup, cfg.lr_decay)
        assert math.isfinite(r["loss"]) and math.isfinite(r["grad_norm"]) and r["elapsed_s"] >= 0
    losses = [r["loss"] for r in records]
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    # a fresh model is near-uniform over 14 tokens (loss ~ ln 14 = 2.6); a trained one is far below
    assert first > 2.0
    assert last < first - 0.8, losses


def test_trained_model_samples_valid_answers(trained):
    _, _, model = trained
    task = IncrementTask()
    untrained = build_tiny_model(
        TinyModelConfig(**{**vars(TINY), "vocab_size": task.vocab_size, "mask_token_id": task.mask_token_id})
    )
    # a random response is valid with probability ~ (2/14)^6 (1/14)^2; the untrained model is no better than that
    assert validity(untrained, task) < 0.05
    assert validity(model, task) > 0.5


def test_saved_model_reloads_with_identical_logits(trained):
    _, out, model = trained
    task = IncrementTask()
    assert (out / "model" / "config.json").is_file()
    loaded = load_model(out / "model")
    assert loaded.mask_token_id == task.mask_token_id
    assert loaded.config.vocab_size == task.vocab_size
    assert loaded.config.hidden_size == TINY.hidden_size and loaded.config.num_hidden_layers == TINY.num_layers
    model.eval()
    loaded.eval()
    prompts = task.prompts(16, split="test", seed=3).ids
    responses = torch.randint(task.vocab_size, (16, task.gen_length), generator=torch.Generator().manual_seed(0))
    x = torch.cat([prompts, responses], dim=1)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
        select = x == task.mask_token_id
        select[:, -3:] = True
        torch.testing.assert_close(loaded(x, select=select), model(x, select=select), rtol=0, atol=0)


def test_config_is_saved_and_reloads(trained):
    cfg, out, _ = trained
    assert load_config(PretrainConfig, out / "config.yaml") == cfg


def weights(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_same_seed_gives_identical_weights(tmp_path):
    a = weights(pretrain(tiny_config(tmp_path / "a", steps=5, seed=1), progress=False))
    b = weights(pretrain(tiny_config(tmp_path / "b", steps=5, seed=1), progress=False))
    c = weights(pretrain(tiny_config(tmp_path / "c", steps=5, seed=2), progress=False))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    assert [r["loss"] for r in read_metrics(tmp_path / "a")] == [r["loss"] for r in read_metrics(tmp_path / "b")]


def test_non_empty_output_dir_needs_overwrite(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    with pytest.raises(FileExistsError, match="not empty"):
        pretrain(tiny_config(out, steps=2), progress=False)
    assert (out / "keep.txt").read_text() == "precious"
    assert not (out / "model").exists()
    pretrain(tiny_config(out, steps=2), overwrite=True, progress=False)
    assert not (out / "keep.txt").exists()
    assert (out / "model" / "config.json").is_file()


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"steps": 0}, "steps"),
        ({"steps": -3}, "steps"),
        ({"lr": 1e-3, "lr_min": 1e-2}, "lr_min"),
        ({"lr_min": -1e-4}, "lr_min"),
        ({"lr": 0.0}, "lr"),
        ({"batch_size": 0}, "batch_size"),
        ({"num_examples": 0}, "num_examples"),
        ({"lr_warmup": 0.6, "lr_decay": 0.6}, "lr_warmup"),
        ({"lr_warmup": -0.1}, "lr_warmup"),
        ({"lr_warmup": -0.5, "lr_decay": 1.0}, "lr_warmup"),
        ({"lr_decay": -0.2}, "lr_decay"),
        ({"grad_clip": 0.0}, "grad_clip"),
        ({"log_every": 0}, "log_every"),
    ],
)
def test_config_validation_names_the_key(overrides, key):
    with pytest.raises(ConfigError) as info:
        PretrainConfig(**overrides)
    assert str(info.value).startswith(f"{key}:")
    # the same error through load_config's key=value overrides
    with pytest.raises(ConfigError, match=rf"(^|\s){key}:"):
        load_config(PretrainConfig, None, [f"{k}={v}" for k, v in overrides.items()])


def test_pretrain_from_data_file(tmp_path):
    task = IncrementTask()
    path = tmp_path / "data.jsonl"
    from_task(task, 200, seed=7).save_jsonl(path)
    out = tmp_path / "run"
    cfg = tiny_config(out, steps=5, data_file=str(path), log_every=1)
    model = pretrain(cfg, progress=False)
    assert (out / "model" / "config.json").is_file()
    assert [r["step"] for r in read_metrics(out)] == list(range(5))
    assert load_config(PretrainConfig, out / "config.yaml").data_file == str(path)
    assert model.mask_token_id == task.mask_token_id


def test_data_file_is_what_the_model_learns(tmp_path):
    """A file whose answers never change is learnt much faster than the task's noisy demonstrations."""
    task = IncrementTask()
    base = from_task(task, 200, seed=0)
    constant = torch.tensor([[4, 5, 6, 7, 8, 9, 3, 3]]).expand(len(base), -1).clone()
    path = tmp_path / "constant.jsonl"
    TokenDataset(base.prompts, base.attention_mask, constant).save_jsonl(path)
    pretrain(tiny_config(tmp_path / "constant", steps=25, log_every=5, data_file=str(path)), progress=False)
    pretrain(tiny_config(tmp_path / "task", steps=25, log_every=5), progress=False)
    final_constant = [r["loss"] for r in read_metrics(tmp_path / "constant")][-2:]
    final_task = [r["loss"] for r in read_metrics(tmp_path / "task")][-2:]
    assert sum(final_constant) / 2 < sum(final_task) / 2 - 0.25, (final_constant, final_task)


def test_bad_data_file_fails_before_creating_the_run(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"prompt": [4, 5], "response": [4, 3]}\n{"prompt": [4, 99], "response": [4, 3]}\n')
    out = tmp_path / "run"
    with pytest.raises(ValueError, match=re.escape(f"{path}:2")):
        pretrain(tiny_config(out, steps=2, data_file=str(path)), progress=False)
    with pytest.raises(FileNotFoundError, match=r"missing\.jsonl"):
        pretrain(tiny_config(out, steps=2, data_file=str(tmp_path / "missing.jsonl")), progress=False)
    # nothing was written: fixing the data file and rerunning needs no --overwrite
    assert not out.exists() or not any(out.iterdir())
    path.write_text('{"prompt": [4, 5], "response": [4, 3]}\n')
    pretrain(tiny_config(out, steps=2, data_file=str(path)), progress=False)
    assert (out / "model" / "config.json").is_file()
