"""The methods beside DTM (diffu-GRPO, wd1, SPG, DMPO, GDSD) end to end on the built-in model: reward rises,
resumption is exact, metrics and checkpoints are written, bad settings give one clear error, and
``train_from_config`` dispatches on ``method``."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from dtm.config import ConfigError
from dtm.config.baselines import SPGConfig, WD1Config
from dtm.config.run import LoraSection
from dtm.config.sampling import SamplingConfig
from dtm.heldout import eval_record
from dtm.methods import METHODS as REGISTRY
from dtm.models import load_model, save_model
from dtm.tasks.increment import IncrementTask
from dtm.training import load_train_config, train_from_config
from dtm.training.dtm import DTMConfig
from tests.shared import read_metrics, tiny_model

METHODS = sorted(name for name in REGISTRY if name != "dtm")


def small_config(method: str, tmp_path, **overrides):
    values = dict(
        base_model="unused",
        output_dir=str(tmp_path / "run"),
        rollout_batches=4,
        num_generations=4,
        micro_batch=8,
        grad_accum=2,
        prompt_pool=64,
        eval_prompts=0,
        sampling=SamplingConfig(decode_batch=64),
    )
    values.update(overrides)
    return REGISTRY[method].config_class()(**values)


def make(cfg, **kwargs):
    return REGISTRY[cfg.method].trainer_class()(cfg, progress=False, **kwargs)


def weights(trainer) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in trainer.raw_student.state_dict().items()}


@pytest.mark.parametrize("method", METHODS)
def test_baseline_raises_heldout_reward(base_model_dir, tmp_path, method):
    cfg = small_config(
        method,
        tmp_path,
        base_model=str(base_model_dir),
        rollout_batches=20,
        micro_batch=32,
        grad_accum=1,
        prompt_pool=2000,
        lr=5e-4,
        eval_prompts=256,
        sampling=SamplingConfig(decode_batch=128),
    )
    make(cfg).train()
    evals = [r for r in read_metrics(tmp_path / "run") if "eval" in r]
    base, final = evals[0], evals[-1]
    assert base["eval"] == "base" and final["eval"] == "final"
    assert final["eval_reward_sampled"] > base["eval_reward_sampled"] + 0.2
    # The tuned model is saved as a loadable folder and reproduces the trained policy's held-out reward.
    reloaded = load_model(tmp_path / "run" / "final" / "model")
    again = eval_record(reloaded, IncrementTask(), cfg.eval_prompts, cfg.sampling, seed=cfg.seed)
    assert again["eval_reward_sampled"] == pytest.approx(final["eval_reward_sampled"])


RESUME_CASES = {
    "diffu_grpo-full": ("diffu_grpo", dict(inner_updates=2, ref_sync_every=3)),
    "diffu_grpo-lora": ("diffu_grpo", dict(inner_updates=2, finetune="lora")),
    "wd1": ("wd1", dict(inner_updates=2)),
    "spg-lora": ("spg", dict(inner_updates=2, finetune="lora")),
    "dmpo-full": ("dmpo", dict(inner_updates=2, masking="sar")),
    "dmpo-lora": ("dmpo", dict(inner_updates=2, finetune="lora")),
    "gdsd-full": ("gdsd", dict(inner_updates=2, ref_sync_every=3)),
    "gdsd-lora": ("gdsd", dict(inner_updates=2, finetune="lora")),
}


@pytest.mark.parametrize("case", sorted(RESUME_CASES))
def test_resume_reproduces_uninterrupted_run(tmp_path, case):
    method, overrides = RESUME_CASES[case]
    overrides = dict(overrides, save_every=1, keep_checkpoints=0, lora=LoraSection(r=4, alpha=8, dropout=0.1))
    full = make(small_config(method, tmp_path / "a", **overrides), model=tiny_model())
    full.train()
    reference = weights(full)

    run_b = tmp_path / "b" / "run"
    run_b.mkdir(parents=True)
    shutil.copytree(tmp_path / "a" / "run" / "step-00000002", run_b / "step-00000002")
    resumed = make(small_config(method, tmp_path / "b", **overrides), model=tiny_model(), resume=True)
    assert resumed.state.step == 2
    resumed.train()
    for name, value in weights(resumed).items():
        torch.testing.assert_close(value, reference[name], rtol=0, atol=0, msg=name)
    assert [r["step"] for r in read_metrics(run_b) if "loss" in r] == [3, 4]


def test_periodic_evaluations_record_rollouts(tmp_path):
    cfg = small_config("wd1", tmp_path, eval_prompts=8, eval_every=2)
    make(cfg, model=tiny_model()).train()
    evals = [r for r in read_metrics(tmp_path / "run") if "eval" in r]
    assert [(r["eval"], r["step"], r["rollouts"]) for r in evals] == [("base", 0, 0), ("step", 2, 32), ("final", 4, 64)]
    assert all(0 <= r["eval_reward_greedy"] <= 1 for r in evals)


@pytest.mark.parametrize("method", METHODS)
def test_metrics_and_checkpoints_are_written(tmp_path, method):
    cfg = small_config(method, tmp_path, save_every=2, keep_checkpoints=0)
    trainer = make(cfg, model=tiny_model())
    before = weights(trainer)
    trainer.train()
    records = read_metrics(tmp_path / "run")
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    per_step = cfg.prompts_per_step * cfg.num_generations
    assert [r["rollouts"] for r in records] == [per_step * s for s in (1, 2, 3, 4)]
    assert trainer.state.rollouts == cfg.planned_rollouts
    assert all(records[i]["wall_time"] < records[i + 1]["wall_time"] for i in range(3))
    for key in ("loss", "grad_norm", "reward_mean", "reward_std", "frac_correct", "lr", "zero_std_groups"):
        assert all(isinstance(r[key], float) for r in records), key
    assert [p.name for p in sorted((tmp_path / "run").glob("step-*"))] == ["step-00000002", "step-00000004"]
    last = tmp_path / "run" / "step-00000004"
    summary = json.loads((last / "trainer_state.json").read_text())
    assert summary["method"] == method and summary["step"] == 4 and summary["rollouts"] == 4 * per_step
    # d1's and GDSD's penalties (beta > 0 by default) and DMPO's importance weights need the reference policy.
    has_reference = method in ("diffu_grpo", "dmpo", "gdsd")
    assert (last / "reference.safetensors").exists() == has_reference
    assert load_train_config(tmp_path / "run" / "config.yaml") == cfg
    assert any(not torch.equal(v, before[k]) for k, v in weights(trainer).items())


# Passes over the N rollouts of one batch, without and with gradient, as docs/methods.md's cost table states them
# for mu = 2 inner updates, S = 3 masked states (SPG, DMPO), S_ratio = 2 (DMPO) and beta > 0 (diffu-GRPO, GDSD).
COST_TABLE = {
    "diffu_grpo": ({"beta": 0.04}, 2 + 2, 2),  # old log-probs (mu > 1) + reference, mu updates
    "wd1": ({}, 0, 2),
    "spg": ({"mc_samples": 3}, 0, 2 * 3),
    "dmpo": ({"mc_samples": 3, "ratio_samples": 2}, 2 * 2, 2 * 3),  # reference and current ELBOs on S_ratio states
    "gdsd": ({"beta": 0.001}, 2 + 2, 2),
}


@pytest.mark.parametrize("method", METHODS)
def test_compute_counters_match_the_cost_table(tmp_path, method):
    """Forward tokens = rollouts x length x decoding rounds + the table's passes x N x length per rollout batch;
    backward tokens = the passes with gradient; evaluations are not counted."""
    overrides, frozen, trained = COST_TABLE[method]
    cfg = small_config(method, tmp_path, rollout_batches=2, inner_updates=2, eval_prompts=8, eval_every=1, **overrides)
    trainer = make(cfg, model=tiny_model())
    trainer.train()
    length = trainer.buffer.pool.ids.shape[1] + cfg.sampling.gen_length
    rows = cfg.rollout_batches * cfg.micro_batch * cfg.grad_accum * length
    rollout_tokens = trainer.state.rollouts * length * cfg.sampling.decode_steps
    assert trainer.state.backward_tokens == trained * rows
    assert trainer.state.forward_tokens == rollout_tokens + (frozen + trained) * rows


@pytest.mark.parametrize("method", ["diffu_grpo", "gdsd"])
def test_reference_stays_initial_unless_synced(tmp_path, method):
    kept = make(small_config(method, tmp_path / "a", rollout_batches=2), model=tiny_model())
    initial = weights(kept)
    kept.train()
    for name, value in kept.reference.model.state_dict().items():
        torch.testing.assert_close(value, initial[name], rtol=0, atol=0)
    synced = make(small_config(method, tmp_path / "b", rollout_batches=2, ref_sync_every=2), model=tiny_model())
    synced.train()
    trained = weights(synced)
    for name, value in synced.reference.model.state_dict().items():
        torch.testing.assert_close(value, trained[name], rtol=0, atol=0)


@pytest.mark.parametrize(("method", "overrides"), [("wd1", {}), ("dmpo", {"ratio_samples": 0}), ("gdsd", {"beta": 0})])
def test_methods_without_a_reference_policy_keep_none(tmp_path, method, overrides):
    assert make(small_config(method, tmp_path, **overrides), model=tiny_model()).reference is None


def test_dmpo_reference_ratio_is_zero_while_the_policy_is_the_reference(tmp_path):
    trainer = make(small_config("dmpo", tmp_path), model=tiny_model())
    batch = trainer._rollout_batch()
    assert torch.equal(trainer._reference_log_ratio(batch), torch.zeros(len(batch.rewards)))
    assert batch.stats["log_ratio"] == 0 and 0 < batch.stats["ess"] <= 1
    with torch.no_grad():
        next(p for p in trainer.raw_student.parameters() if p.dim() == 2).mul_(1.5)
    assert trainer._reference_log_ratio(batch).abs().mean() > 1e-3


def test_train_from_config_dispatches_on_method(tmp_path):
    save_model(tiny_model(), tmp_path / "base")
    source = dict(
        method="spg",
        base_model=str(tmp_path / "base"),
        output_dir=str(tmp_path / "run"),
        rollout_batches=1,
        micro_batch=8,
        prompt_pool=16,
        eval_prompts=0,
    )
    model = train_from_config(source, ["mc_samples=1"], progress=False)
    assert (tmp_path / "run" / "final" / "model").is_dir() and model is not None
    saved = load_train_config(tmp_path / "run" / "config.yaml")
    assert type(saved) is SPGConfig and saved.mc_samples == 1
    assert type(load_train_config(None)) is DTMConfig
    assert type(load_train_config({"method": "spg"}, ["method=wd1"])) is WD1Config


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["method=grpo"], "method: must be one of 'dtm', 'diffu_grpo', 'wd1', 'spg', 'dmpo', 'gdsd', got 'grpo'"),
        (["method=diffu_grpo", "clip_eps=0"], "clip_eps: must be in (0, 1)"),
        (["method=diffu_grpo", "clip_eps=1.5"], "clip_eps: must be in (0, 1)"),
        (["method=diffu_grpo", "beta=-0.1"], "beta: must be >= 0"),
        (["method=diffu_grpo", "p_mask=1"], "p_mask: must be in [0, 1)"),
        (["method=diffu_grpo", "ref_sync_every=-1"], "ref_sync_every: must be >= 0"),
        (["method=diffu_grpo", "beta=0", "ref_sync_every=5"], "ref_sync_every: needs beta > 0"),
        (["method=wd1", "psi=0"], "psi: must be positive"),
        (["method=wd1", "p_mask=-0.1"], "p_mask: must be in [0, 1)"),
        (["method=wd1", "clip_eps=0.2"], "clip_eps: unknown key"),
        (["method=wd1", "inner_updates=0"], "inner_updates: must be positive"),
        (["method=wd1", "prompt_pool=4"], "prompt_pool: must be >= the prompts per step"),
        (["method=wd1", "finetune=adapter"], "finetune: must be one of 'full', 'lora'"),
        (["method=wd1", "load.load_in_4bit=true"], "load.load_in_4bit: a 4-bit base cannot be trained directly"),
        (["method=spg", "eubo_beta=0.5"], "eubo_beta: must be >= 1"),
        (["method=spg", "eubo_weight=1.5"], "eubo_weight: must be in [0, 1]"),
        (["method=spg", "mc_samples=0"], "mc_samples: must be positive"),
        (["method=spg", "num_generations=1"], "num_generations: must be >= 2"),
        (["method=spg", "num_generations=3"], "num_generations: must divide micro_batch x grad_accum = 32"),
        (["method=spg", "rollout_batches=0"], "rollout_batches: must be positive"),
        (["method=spg", "steps=3"], "steps: renamed to rollout_batches"),
        (["method=spg", "lr=-1"], "lr: must be positive"),
        (["method=spg", "sampling.block_length=3"], "sampling.block_length: must divide gen_length"),
        (["method=spg", "rollout_batchs=3"], "did you mean 'rollout_batches'"),
        (["method=spg", "psi=1"], "psi: unknown key"),
        (["method=dmpo", "alpha=0"], "alpha: must be positive"),
        (["method=dmpo", "baseline=median"], "baseline: must be one of 'none', 'mean', 'negative'"),
        (["method=dmpo", "baseline_strength=-1"], "baseline_strength: must be >= 0"),
        (["method=dmpo", "mc_samples=0"], "mc_samples: must be positive"),
        (["method=dmpo", "ratio_samples=-1"], "ratio_samples: must be >= 0"),
        (["method=dmpo", "masking=block"], "masking: must be one of 'sar', 'uniform'"),
        (["method=dmpo", "psi=1"], "psi: unknown key"),
        (["method=gdsd", "psi=0"], "psi: must be positive"),
        (["method=gdsd", "beta=-0.1"], "beta: must be >= 0"),
        (["method=gdsd", "ref_sync_every=-1"], "ref_sync_every: must be >= 0"),
        (["method=gdsd", "beta=0", "ref_sync_every=5"], "ref_sync_every: needs beta > 0"),
        (["method=gdsd", "num_generations=1"], "num_generations: must be >= 2"),
        (["method=gdsd", "alpha=1"], "alpha: unknown key"),
        (["clip_eps=0.2"], "clip_eps: unknown key"),  # no method: DTM, which has no clip_eps
    ],
)
def test_bad_config_values_give_one_clear_error(overrides, message):
    with pytest.raises(ConfigError) as error:
        load_train_config(None, overrides)
    assert message in str(error.value)
