"""The DTM trainer end to end on the built-in model: reward rises, resumption is exact, phases behave."""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file

from dtm.config import ConfigError, load_config
from dtm.config.run import LoraSection
from dtm.config.sampling import SamplingConfig
from dtm.errors import RunError
from dtm.heldout import eval_record
from dtm.models import load_model
from dtm.tasks.increment import IncrementTask
from dtm.training.dtm import RUN_STATE_BYTES, DTMConfig, DTMTrainer
from tests.shared import read_metrics, tiny_model


def small_config(tmp_path, **overrides) -> DTMConfig:
    values = dict(
        base_model="unused",
        output_dir=str(tmp_path / "run"),
        h=1.0,
        a_end=2.0,
        steps_per_h=4,
        buffer_prompts=8,
        buffer_completions=2,
        refresh_every=2,
        refresh_prompts=4,
        prompt_pool=64,
        micro_batch=8,
        grad_accum=2,
        eval_prompts=0,
        sampling=SamplingConfig(decode_batch=64),
    )
    values.update(overrides)
    return DTMConfig(**values)


def student_weights(trainer: DTMTrainer) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in trainer.raw_student.state_dict().items()}


def test_dtm_raises_heldout_reward(base_model_dir, tmp_path):
    task = IncrementTask()
    cfg = small_config(
        tmp_path,
        base_model=str(base_model_dir),
        h=2.0,
        a_end=6.0,
        steps_per_h=15,
        buffer_prompts=32,
        buffer_completions=4,
        micro_batch=32,
        grad_accum=1,
        lr=2e-3,
        eval_prompts=256,
        refresh_prompts=8,
    )
    trainer = DTMTrainer(cfg, progress=False)
    trainer.train()
    evals = [r for r in read_metrics(tmp_path / "run") if "eval" in r]
    base, final = evals[0], evals[-1]
    assert base["eval"] == "base" and final["eval"] == "final"
    assert final["eval_reward_sampled"] > base["eval_reward_sampled"] + 0.08
    # The tuned model is saved as a loadable folder and reproduces the trained student's held-out reward.
    reloaded = load_model(tmp_path / "run" / "final" / "model")
    again = eval_record(reloaded, task, cfg.eval_prompts, cfg.sampling, seed=cfg.seed)
    assert again["eval_reward_sampled"] == pytest.approx(final["eval_reward_sampled"])


@pytest.mark.parametrize("finetune", ["full", "lora"])
@pytest.mark.parametrize("resume_at", [3, 4])  # mid-phase and at the phase boundary
def test_resume_reproduces_uninterrupted_run(tmp_path, finetune, resume_at):
    overrides = dict(finetune=finetune, save_every=1, keep_checkpoints=0, ema=0.5 if finetune == "full" else 0.0)
    overrides["lora"] = LoraSection(r=4, alpha=8, dropout=0.1)
    full = DTMTrainer(small_config(tmp_path / "a", **overrides), model=tiny_model(), progress=False)
    full.train()
    reference = student_weights(full)

    run_b = tmp_path / "b" / "run"
    run_b.mkdir(parents=True)
    checkpoint = f"step-{resume_at:08d}"
    shutil.copytree(tmp_path / "a" / "run" / checkpoint, run_b / checkpoint)
    resumed = DTMTrainer(small_config(tmp_path / "b", **overrides), model=tiny_model(), resume=True, progress=False)
    assert resumed.state.step == resume_at
    resumed.train()
    for name, value in student_weights(resumed).items():
        torch.testing.assert_close(value, reference[name], rtol=0, atol=0, msg=name)


def damage_file(path, how: str) -> None:
    """Truncate ``path`` to half its size, or flip one byte of its last (tensor data) byte at the same size."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if how == "truncated" else data[:-1] + bytes([data[-1] ^ 0xFF]))


@pytest.mark.parametrize("how", ["truncated", "corrupted"])
def test_damaged_checkpoint_falls_back_to_the_previous_intact_one(tmp_path, caplog, how):
    """The newest checkpoint's weights are cut short or altered in place (a corrupted byte still loads, with wrong
    numbers): resuming detects it by its manifest, warns, sets it aside and continues from the one before, reaching
    the uninterrupted run's weights exactly."""
    overrides = dict(save_every=1, keep_checkpoints=0, ema=0.5)
    full = DTMTrainer(small_config(tmp_path / "a", **overrides), model=tiny_model(), progress=False)
    full.train()
    reference = student_weights(full)

    run_b = tmp_path / "b" / "run"
    run_b.mkdir(parents=True)
    for step in (3, 4):
        shutil.copytree(tmp_path / "a" / "run" / f"step-{step:08d}", run_b / f"step-{step:08d}")
    damage_file(run_b / "step-00000004" / "student.safetensors", how)
    with caplog.at_level("WARNING", logger="dtm.training.checkpoint"):
        resumed = DTMTrainer(small_config(tmp_path / "b", **overrides), model=tiny_model(), resume=True, progress=False)
    assert resumed.state.step == 3
    assert "step-00000004 is damaged (student.safetensors" in caplog.text
    assert (run_b / ".damaged-step-00000004").is_dir()
    resumed.train()
    for name, value in student_weights(resumed).items():
        torch.testing.assert_close(value, reference[name], rtol=0, atol=0, msg=name)


def test_resume_with_every_checkpoint_damaged_is_an_error(tmp_path):
    cfg = small_config(tmp_path, save_every=1, keep_checkpoints=2, a_end=1.0)
    DTMTrainer(cfg, model=tiny_model(), progress=False).train()
    for folder in (tmp_path / "run").glob("step-*"):
        damage_file(folder / "optimizer.pt", "truncated")
    with pytest.raises(RuntimeError, match=r"every checkpoint in .* is damaged"):
        DTMTrainer(cfg, model=tiny_model(), resume=True, progress=False)


@pytest.mark.parametrize("finetune", ["full", "lora"])
def test_gradient_checkpointing_switch_trains_the_same_weights(tmp_path, finetune):
    overrides = dict(finetune=finetune, a_end=1.0, lora=LoraSection(r=4, alpha=8))
    plain = DTMTrainer(small_config(tmp_path / "a", **overrides), model=tiny_model(), progress=False)
    plain.train()
    cfg = small_config(tmp_path / "b", gradient_checkpointing=True, **overrides)
    checkpointed = DTMTrainer(cfg, model=tiny_model(), progress=False)
    assert checkpointed.raw_student.model.is_activation_checkpointing
    checkpointed.train()
    reference = student_weights(plain)
    for name, value in student_weights(checkpointed).items():
        torch.testing.assert_close(value, reference[name], rtol=0, atol=1e-6, msg=name)


@pytest.mark.parametrize(("finetune", "cache"), [("full", "prefix"), ("lora", "prefix"), ("lora", "dual")])
def test_cached_threshold_rollouts_through_either_teacher(tmp_path, finetune, cache):
    sampling = SamplingConfig(
        gen_length=8, block_length=4, decode_steps=8, decode_batch=64, cache=cache, threshold=0.9, remasking="random"
    )
    cfg = small_config(tmp_path, finetune=finetune, a_end=1.0, sampling=sampling, lora=LoraSection(r=4, alpha=8))
    trainer = DTMTrainer(cfg, model=tiny_model(), progress=False)
    trainer.train()
    assert trainer.state.rollouts > 0 and trainer.state.reward_errors == 0


def test_bf16_mixed_precision_switch_trains(tmp_path):
    cfg = small_config(tmp_path, mixed_precision="bf16", a_end=1.0)
    trainer = DTMTrainer(cfg, model=tiny_model(), progress=False)
    before = student_weights(trainer)
    trainer.train()
    steps = [r for r in read_metrics(tmp_path / "run") if "loss" in r]
    assert len(steps) == cfg.total_steps and all(r["skipped_steps"] == 0 for r in steps)
    after = student_weights(trainer)
    assert all(v.dtype == torch.float32 for v in after.values())  # master weights stay fp32 under autocast
    assert any(not torch.equal(after[k], before[k]) for k in after)


def test_phase_boundaries_anneal_to_a_end_and_sync_teacher(tmp_path):
    cfg = small_config(tmp_path, h=0.8, a_end=2.0, steps_per_h=3, save_every=0, keep_checkpoints=0)
    trainer = DTMTrainer(cfg, model=tiny_model(), progress=False)
    trainer.train()
    steps = [r for r in read_metrics(tmp_path / "run") if "loss" in r]
    assert len(steps) == cfg.total_steps == 9
    tilts = [(r["a"], r["h"]) for r in steps]
    assert tilts[:3] == [(0.0, 0.8)] * 3 and tilts[3:6] == [(0.8, 0.8)] * 3
    assert tilts[6][0] == pytest.approx(1.6) and tilts[6][1] == pytest.approx(0.4)  # last phase shortened
    # One checkpoint per phase, the last one at a_end; teacher == student at each phase end.
    final = tmp_path / "run" / "step-00000009"
    assert json.loads((final / "trainer_state.json").read_text())["a"] == pytest.approx(2.0)
    student, teacher = load_file(final / "student.safetensors"), load_file(final / "teacher.safetensors")
    assert student.keys() == teacher.keys()
    for name in student:
        torch.testing.assert_close(student[name], teacher[name])
    # LR restarts each phase.
    assert steps[3]["lr"] == steps[0]["lr"] and steps[2]["lr"] == pytest.approx(cfg.lr_min)


def test_planned_rollouts_and_periodic_evaluations(tmp_path):
    cfg = small_config(tmp_path, h=1.0, a_end=2.0, steps_per_h=5, refresh_every=2, eval_prompts=8, eval_every=3)
    trainer = DTMTrainer(cfg, model=tiny_model(), progress=False)
    trainer.train()
    # Per phase: a full buffer (8 x 2) and refreshes at in-phase steps 2 and 4 (4 prompts x 2 each).
    assert trainer.state.rollouts == cfg.planned_rollouts == 2 * (16 + 2 * 8)
    evals = [r for r in read_metrics(tmp_path / "run") if "eval" in r]
    assert [(r["eval"], r["step"]) for r in evals] == [
        ("base", 0),
        ("step", 3),
        ("step", 6),
        ("step", 9),
        ("final", 10),
    ]
    assert evals[0]["rollouts"] == 0 and evals[-1]["rollouts"] == cfg.planned_rollouts
    assert trainer.state.eval_seconds > 0


def test_a_reward_function_that_always_fails_stops_the_run(tmp_path):
    """Failures beyond ``max_reward_errors`` of a batch's evaluations stop the run with an error naming the key,
    instead of training on rewards of 0; ``max_reward_errors=1`` lets the run go on and counts them."""

    def broken(responses, meta):
        raise ValueError("no reward here")

    cfg = small_config(tmp_path, a_end=1.0, steps_per_h=2)
    with pytest.raises(RunError, match=r"of \d+ reward evaluations of a rollout batch failed .* max_reward_errors=0.5"):
        DTMTrainer(cfg, model=tiny_model(), reward_fns=[broken], progress=False).train()
    cfg = small_config(tmp_path / "tolerant", a_end=1.0, steps_per_h=2, max_reward_errors=1.0)
    trainer = DTMTrainer(cfg, model=tiny_model(), reward_fns=[broken], progress=False)
    trainer.train()
    assert trainer.state.reward_errors == trainer.state.rollouts


def test_failing_reward_function_scores_zero_and_is_counted(tmp_path):
    task = IncrementTask()

    def flaky(responses, meta):
        if len(meta) > 1:
            raise RuntimeError("batch failure")
        if meta[0]["digits"][0] % 2:
            raise ValueError("bad row")
        return [1.0]

    cfg = small_config(tmp_path, a_end=1.0, steps_per_h=2)
    trainer = DTMTrainer(cfg, model=tiny_model(), reward_fns=[task.reward, flaky], progress=False)
    trainer.train()
    buffer = trainer.buffer
    meta = buffer.pool.select(buffer.prompt_rows()).meta
    even = torch.tensor([m["digits"][0] % 2 == 0 for m in meta])
    assert trainer.state.reward_errors > 0 and not even.all()
    assert read_metrics(tmp_path / "run")[-1]["reward_errors"] == trainer.state.reward_errors
    torch.testing.assert_close(buffer.rewards, task.reward(buffer.responses, meta) + even.float())


def test_hanging_reward_function_costs_its_time_limit_and_is_counted(tmp_path):
    """A reward function that never returns on odd prompts (an hour's sleep) under reward_timeout=0.2: training ends
    in seconds, those completions score 0 for it, and each is counted in reward_timeouts."""
    task = IncrementTask()

    def stuck_on_odd(responses, meta):
        if any(m["digits"][0] % 2 for m in meta):
            time.sleep(3600)
        return [1.0] * len(meta)

    cfg = small_config(tmp_path, a_end=1.0, steps_per_h=2, reward_timeout=0.2)
    trainer = DTMTrainer(cfg, model=tiny_model(), reward_fns=[task.reward, stuck_on_odd], progress=False)
    start = time.monotonic()
    trainer.train()
    assert time.monotonic() - start < 120
    buffer = trainer.buffer
    meta = buffer.pool.select(buffer.prompt_rows()).meta
    even = torch.tensor([m["digits"][0] % 2 == 0 for m in meta])
    assert trainer.state.reward_timeouts == int((~even).sum()) > 0 and trainer.state.reward_errors == 0
    assert read_metrics(tmp_path / "run")[-1]["reward_timeouts"] == trainer.state.reward_timeouts
    torch.testing.assert_close(buffer.rewards, task.reward(buffer.responses, meta) + even.float())


def test_adaptive_control_variate_is_estimated_and_logged(tmp_path):
    cfg = small_config(tmp_path, adaptive_c=True, c_ema=0.5, control_variate=1.0)
    trainer = DTMTrainer(cfg, model=tiny_model(), progress=False)
    trainer.train()
    records = [r for r in read_metrics(tmp_path / "run") if "loss" in r]
    c_used = [r["c"] for r in records]
    estimates = [r["c_star"] for r in records]
    assert all(e is not None for e in estimates)
    for before, after, estimate in zip(c_used, c_used[1:], estimates, strict=False):
        assert after == pytest.approx(0.5 * before + 0.5 * estimate)


def test_existing_run_folder_is_not_overwritten(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "keep.txt").write_text("precious")
    with pytest.raises(FileExistsError, match="--resume"):
        DTMTrainer(small_config(tmp_path), model=tiny_model(), progress=False)
    assert (tmp_path / "run" / "keep.txt").read_text() == "precious"


def test_output_folder_that_cannot_be_created_is_reported_before_training(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    cfg = small_config(tmp_path, output_dir=str(tmp_path / "file" / "run"))
    with pytest.raises(PermissionError, match=r"output folder .*file/run is not writable"):
        DTMTrainer(cfg, model=tiny_model(), progress=False)


def test_full_disk_is_reported_before_training(tmp_path, monkeypatch):
    from collections import namedtuple

    import dtm.training.run_dir as run_dir_module

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(run_dir_module.shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 1000, 1000))
    with pytest.raises(OSError, match=r"has 0 MB free but this run's checkpoints need about"):
        DTMTrainer(small_config(tmp_path), model=tiny_model(), progress=False)
    assert not list((tmp_path / "run").glob("step-*"))


@pytest.mark.parametrize("finetune", ["full", "lora"])
def test_disk_space_estimate_covers_a_real_checkpoint(tmp_path, finetune):
    overrides = dict(finetune=finetune, lora=LoraSection(r=4, alpha=8), steps_per_h=3, save_every=1, keep_checkpoints=2)
    model = tiny_model()
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    trainer = DTMTrainer(small_config(tmp_path, **overrides), model=model, progress=False)
    per_checkpoint = (trainer._checkpoint_bytes(tiny_model()) - weights) / 3  # 2 kept + 1 being written
    trainer.train()
    folders = sorted((tmp_path / "run").glob("step-*"))
    assert [f.name for f in folders] == ["step-00000005", "step-00000006"]  # mid-phase (with AdamW state), phase end
    written = max(sum(f.stat().st_size for f in folder.iterdir()) for folder in folders)
    assert written <= per_checkpoint <= 1.5 * written + RUN_STATE_BYTES


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("h=0", "h: must be > 0"),
        ("h=-1", "h: must be > 0"),
        ("a_end=0.5", "a_end: must be >= h"),
        ("steps_per_h=0", "steps_per_h"),
        ("control_variate=50", "control_variate: must be in"),
        ("c_ema=1.0", "c_ema"),
        ("ema=1.5", "ema"),
        ("masking=random", "masking: must be one of 'sar', 'uniform'"),
        ("finetune=frozen", "finetune: must be one of"),
        ("teacher=lora", "teacher: renamed to finetune"),
        ("buffer_prompts=0", "buffer_prompts"),
        ("prompt_pool=2", "prompt_pool"),
        ("refresh_prompts=1000", "refresh_prompts"),
        ("refresh_every=-1", "refresh_every"),
        ("micro_batch=0", "micro_batch"),
        ("grad_accum=0", "grad_accum"),
        ("lr=-1e-3", "lr: must be positive"),
        ("lr_min=1.0", "lr_min"),
        ("lr_warmup=0.95", "lr_warmup + lr_decay"),
        ("lr_decay=-0.1", "lr_decay"),
        ("decay=0.5", "decay: renamed to lr_decay"),
        ("sampling.steps=8", "sampling.steps: renamed to sampling.decode_steps"),
        ("model.dtype=bfloat16", "model: renamed to load"),
        ("betas=[0.9,1.5]", "betas"),
        ("grad_clip=0", "grad_clip"),
        ("sampling.block_length=3", "sampling.block_length: must divide gen_length"),
        ("sampling.decode_steps=1", "sampling.decode_steps: must be >= the number of blocks"),
        ("sampling.temperature=-1", "sampling.temperature"),
        ("sampling.remasking=greedy", "sampling.remasking"),
        ("lr=fast", "lr: expected float"),
        ("seed=1.5", "seed: expected int"),
        ("stpes_per_h=3", "did you mean 'steps_per_h'"),
        ("sampling.temprature=1", "did you mean 'temperature'"),
        ("mixed_precision=fp8", "mixed_precision"),
        ("task=sudokku", "task: unknown task 'sudokku'; available: countdown"),
        ("max_prompt_length=-1", "max_prompt_length: must be >= 0"),
        ("prompt_truncation=right", "prompt_truncation: must be one of 'error', 'left'"),
        ("load.load_in_4bit=true", "load.load_in_4bit: a 4-bit base cannot be trained directly; set finetune: lora"),
        ("load.dtype=int8", "load.dtype: must be one of"),
    ],
)
def test_bad_config_values_give_one_clear_error(override, message):
    with pytest.raises(ConfigError) as error:
        load_config(DTMConfig, None, [override])
    assert message in str(error.value)


def test_nonfinite_steps_are_skipped_then_training_stops_with_checkpoint_intact(tmp_path, monkeypatch):
    import dtm.training.dtm as dtm_module

    real_loss = dtm_module.cdtm_loss
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        calls["n"] += 1
        loss = real_loss(*args, **kwargs)
        return loss * float("nan") if calls["n"] > 8 else loss  # steps 1-4 fine (grad_accum 2), then NaN

    monkeypatch.setattr(dtm_module, "cdtm_loss", poisoned)
    cfg = small_config(tmp_path, max_nonfinite_steps=3, save_every=2, keep_checkpoints=0)
    trainer = DTMTrainer(cfg, model=tiny_model(), progress=False)
    good = trainer.raw_student.state_dict()["model.lm_head.weight"].clone()
    with pytest.raises(RuntimeError, match="non-finite"):
        trainer.train()
    assert trainer.state.step == 4 + 3 and trainer.state.skipped_steps == 3
    # Skipped steps leave the weights untouched, and the step-4 checkpoint holds the last good weights.
    trained = trainer.raw_student.state_dict()["model.lm_head.weight"]
    assert not torch.equal(trained, good)
    saved = load_file(tmp_path / "run" / "step-00000004" / "student.safetensors")["model.lm_head.weight"]
    torch.testing.assert_close(saved, trained, rtol=0, atol=0)
    assert [r["skipped_steps"] for r in read_metrics(tmp_path / "run") if "loss" in r][-3:] == [1, 2, 3]


@pytest.mark.parametrize(("baseline", "normalise"), [(True, False), (False, True), (True, True)])
def test_per_prompt_control_variates_come_from_the_other_completions(tmp_path, baseline, normalise):
    """Each rollout's c (prompt_baseline) and divisor (tilt_normalization) is the mean of exp(h r) over the other
    buffer completions of its prompt; training runs with them."""
    h, k = 1.5, 3
    mode = "prompt" if normalise else "none"
    cfg = small_config(tmp_path, prompt_baseline=baseline, tilt_normalization=mode, buffer_completions=k)
    trainer = DTMTrainer(cfg, model=tiny_model(), progress=False)
    trainer.buffer.rebuild(trainer._rollout)
    trainer.buffer.rewards = torch.rand(len(trainer.buffer), generator=torch.Generator().manual_seed(0))
    state = trainer.batch_generator.get_state()
    batch = trainer._micro_batch(h)
    trainer.batch_generator.set_state(state)
    rows = trainer.buffer.sample(cfg.micro_batch, trainer.batch_generator)[3]
    rewards = trainer.buffer.rewards.tolist()
    for row, log_tilt, c in zip(rows.tolist(), batch.log_tilt.tolist(), batch.c.tolist(), strict=True):
        group = row // k
        others = [math.exp(h * rewards[group * k + j]) for j in range(k) if group * k + j != row]
        z = sum(others) / len(others)
        weight, expected_c = math.exp(h * rewards[row]), z if baseline else cfg.control_variate
        if normalise:
            weight, expected_c = weight / z, expected_c / z
        assert math.exp(log_tilt) == pytest.approx(weight, rel=1e-5)
        assert c == pytest.approx(expected_c, rel=1e-5)
    trainer.train()
    records = [r for r in read_metrics(tmp_path / "run") if "loss" in r]
    assert all(math.isfinite(r["loss"]) and r["c"] > 0 for r in records)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["prompt_baseline=true", "buffer_completions=1"], "buffer_completions: prompt_baseline and tilt_norm"),
        (["tilt_normalization=prompt", "buffer_completions=1"], "need at least 2 completions per prompt"),
        (["prompt_baseline=true", "adaptive_c=true"], "prompt_baseline: chooses c per prompt"),
        (["tilt_normalization=batch"], "tilt_normalization: must be one of 'none', 'prompt'"),
    ],
)
def test_per_prompt_settings_that_cannot_work_are_rejected(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(DTMConfig, None, overrides)


@pytest.mark.parametrize("finetune", ["full", "lora"])
def test_compute_counters_match_the_run_plan(tmp_path, finetune):
    """Forward tokens = rollouts x length x decoding rounds + (teacher + student) x states x length per optimizer
    step; backward tokens = the student's; evaluations are not counted."""
    cfg = small_config(tmp_path, finetune=finetune, lora=LoraSection(r=4, alpha=8), eval_prompts=8, eval_every=2)
    trainer = DTMTrainer(cfg, model=tiny_model(), progress=False)
    trainer.train()
    length = trainer.buffer.pool.ids.shape[1] + cfg.sampling.gen_length
    states = cfg.total_steps * cfg.micro_batch * cfg.grad_accum
    rollout_tokens = trainer.state.rollouts * length * cfg.sampling.decode_steps
    assert trainer.state.backward_tokens == states * length
    assert trainer.state.forward_tokens == rollout_tokens + 2 * states * length
    assert trainer.state.compute_tokens == trainer.state.forward_tokens + 2 * trainer.state.backward_tokens


def test_resume_refuses_other_settings_but_not_other_checkpointing(tmp_path):
    cfg = small_config(tmp_path, a_end=1.0, save_every=2)
    DTMTrainer(cfg, model=tiny_model(), progress=False).train()
    with pytest.raises(ValueError, match=r"cannot resume .* with other settings \(h: 1\.0 in the run, 0\.5 now\)"):
        DTMTrainer(replace(cfg, h=0.5), model=tiny_model(), resume=True, progress=False)
    DTMTrainer(replace(cfg, save_every=1, keep_checkpoints=3), model=tiny_model(), resume=True, progress=False)
