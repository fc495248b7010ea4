"""The DTM trainer: annealed reward tilting by distilling pi_a (teacher) into pi_{a+h} (student).

Read ``train`` top to bottom: each optimizer step draws buffer rollouts, builds masked states, runs the teacher
(no gradient) and the student at the loss positions, and minimises the c-DTM loss. Every ``steps_per_h`` steps a phase
ends: a += h, the teacher becomes the student (or its EMA), the optimizer moments are cleared, the LR schedule
restarts and the buffer is rebuilt with the new teacher.
"""

from __future__ import annotations

import copy
import json
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from accelerate.utils import DistributedType, gather_object, set_seed
from peft import LoraConfig, prepare_model_for_kbit_training
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm
from transformers import Cache

from dtm.config import check, save_config
from dtm.diffusion.losses import (
    ControlVariate,
    cdtm_loss,
    optimal_control_variate,
    position_weights,
    tilt_shift,
)
from dtm.diffusion.masking import MaskedState, sar_masked_states, uniform_masked_states
from dtm.models import save_model
from dtm.models.base import DiffusionLM
from dtm.models.loading import LoadOptions, load_tokenizer
from dtm.sampling import SamplingConfig, rollout
from dtm.tasks import build_task, task_names
from dtm.tasks.base import PromptBatch, TokenTask
from dtm.training import checkpoint as ckpt
from dtm.training.accel import make_accelerator
from dtm.training.buffer import ReplayBuffer
from dtm.training.logging import MetricsLog, prepare_run_dir
from dtm.training.rewards import RewardFn, score
from dtm.training.schedule import lr_at, set_lr
from dtm.training.teacher import CopyTeacher, LoraTeacher, add_lora_adapters, load_trainable_state, trainable_state

RUN_STATE_BYTES = 1_000_000


@dataclass
class LoraSection:
    r: int = 8
    alpha: int = 16
    dropout: float = 0.0
    # Module names (matched as suffixes) or one regular expression matched against full module names.
    target_modules: list[str] | str = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )


@dataclass
class DTMConfig:
    """Every setting of a DTM run (METHOD.md §5). Defaults are a CPU-sized run on the ``increment`` toy task."""

    base_model: str = "runs/pretrain/model"
    model: LoadOptions = field(default_factory=LoadOptions)
    task: str = "increment"
    task_options: dict[str, Any] = field(default_factory=dict)
    prompt_pool: int = 2000
    max_prompt_length: int = 0
    prompt_truncation: Literal["error", "left"] = "error"
    # Tilt annealing.
    h: float = 2.0
    a_end: float = 6.0
    steps_per_h: int = 40
    control_variate: float = 1.0
    adaptive_c: bool = False
    c_ema: float = 0.9
    masking: Literal["sar", "uniform"] = "sar"
    # Teacher / student.
    teacher: Literal["copy", "lora"] = "copy"
    lora: LoraSection = field(default_factory=LoraSection)
    ema: float = 0.0
    # Replay buffer and rollouts.
    buffer_prompts: int = 64
    buffer_completions: int = 4
    refresh_every: int = 10
    refresh_prompts: int = 16
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    # Optimisation.
    micro_batch: int = 32
    grad_accum: int = 1
    lr: float = 1e-3
    lr_min: float = 1e-4
    warmup: float = 0.05
    decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.99)
    eps: float = 1e-8
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    max_nonfinite_steps: int = 10
    # Run.
    seed: int = 0
    output_dir: str = "runs/dtm"
    save_every: int = 0
    keep_checkpoints: int = 2
    eval_prompts: int = 256
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"
    gradient_checkpointing: bool = False
    log_with: Literal["none", "tensorboard", "wandb"] = "none"

    def __post_init__(self) -> None:
        check(self.task in task_names(), "task", f"unknown task {self.task!r}; available: {', '.join(task_names())}")
        check(
            self.max_prompt_length >= 0,
            "max_prompt_length",
            f"must be >= 0 (0 = no limit), got {self.max_prompt_length}",
        )
        check(
            not self.model.load_in_4bit or self.teacher == "lora",
            "model.load_in_4bit",
            "a 4-bit base cannot be trained directly; set teacher: lora (student and teacher adapters on the base)",
        )
        check(self.h > 0, "h", f"must be > 0, got {self.h}")
        check(self.a_end >= self.h, "a_end", f"must be >= h={self.h}, got {self.a_end}")
        check(self.steps_per_h > 0, "steps_per_h", f"must be positive, got {self.steps_per_h}")
        check(-10 <= self.control_variate <= 10, "control_variate", f"must be in [-10, 10], got {self.control_variate}")
        check(0 <= self.c_ema < 1, "c_ema", f"must be in [0, 1), got {self.c_ema}")
        check(0 <= self.ema < 1, "ema", f"must be in [0, 1) (0 = off), got {self.ema}")
        check(self.buffer_prompts > 0, "buffer_prompts", f"must be positive, got {self.buffer_prompts}")
        check(self.buffer_completions > 0, "buffer_completions", f"must be positive, got {self.buffer_completions}")
        pool_ok = self.prompt_pool >= self.buffer_prompts
        check(pool_ok, "prompt_pool", f"must be >= buffer_prompts ({self.buffer_prompts}), got {self.prompt_pool}")
        check(self.refresh_every >= 0, "refresh_every", f"must be >= 0 (0 = never), got {self.refresh_every}")
        check(
            0 <= self.refresh_prompts <= self.buffer_prompts,
            "refresh_prompts",
            f"must be in [0, buffer_prompts={self.buffer_prompts}], got {self.refresh_prompts}",
        )
        check(self.micro_batch > 0, "micro_batch", f"must be positive, got {self.micro_batch}")
        check(self.grad_accum > 0, "grad_accum", f"must be positive, got {self.grad_accum}")
        check(self.lr > 0, "lr", f"must be positive, got {self.lr}")
        check(0 <= self.lr_min <= self.lr, "lr_min", f"must be in [0, lr={self.lr}], got {self.lr_min}")
        check(self.warmup >= 0, "warmup", f"must be >= 0, got {self.warmup}")
        check(self.decay >= 0, "decay", f"must be >= 0, got {self.decay}")
        check(self.warmup + self.decay <= 1, "warmup", "warmup + decay must be a fraction in [0, 1]")
        check(all(0 <= b < 1 for b in self.betas), "betas", f"must be in [0, 1), got {self.betas}")
        check(self.grad_clip > 0, "grad_clip", f"must be positive, got {self.grad_clip}")
        check(self.max_nonfinite_steps > 0, "max_nonfinite_steps", f"must be positive, got {self.max_nonfinite_steps}")
        check(self.save_every >= 0, "save_every", f"must be >= 0 (0 = at phase ends only), got {self.save_every}")
        check(self.eval_prompts >= 0, "eval_prompts", f"must be >= 0, got {self.eval_prompts}")

    @property
    def num_phases(self) -> int:
        return math.ceil(self.a_end / self.h - 1e-9)

    @property
    def total_steps(self) -> int:
        return self.num_phases * self.steps_per_h

    def phase_tilt(self, phase: int) -> tuple[float, float]:
        """(a, h) of a phase: a = phase * h; the last phase's h is shortened so that a + h = a_end."""
        a = phase * self.h
        return a, min(self.h, self.a_end - a)


@dataclass
class MicroBatch:
    """One micro-batch: left-padded prompts, their clean responses and rewards, and the responses' masked states."""

    prompt_ids: torch.Tensor
    prompt_mask: torch.Tensor
    responses: torch.Tensor
    rewards: torch.Tensor
    state: MaskedState


@dataclass
class TrainState:
    """Counters saved in every checkpoint."""

    step: int = 0
    c: float = 1.0
    nonfinite_steps: int = 0
    skipped_steps: int = 0
    reward_errors: int = 0
    rollouts: int = 0


class DTMTrainer:
    """Runs DTM on a task. ``reward_fns`` (summed) default to the task's own reward."""

    def __init__(
        self,
        cfg: DTMConfig,
        *,
        model: DiffusionLM | None = None,
        task: TokenTask | None = None,
        reward_fns: list[RewardFn] | None = None,
        resume: bool = False,
        overwrite: bool = False,
        progress: bool = True,
    ) -> None:
        self.cfg = cfg
        if model is None or task is None:
            tokenizer = load_tokenizer(cfg.base_model, cfg.model.trust_remote_code) if task is None else None
            model = model if model is not None else cfg.model.load(cfg.base_model, tokenizer)
            task = task or build_task(
                cfg.task,
                cfg.task_options,
                tokenizer=tokenizer,
                gen_length=cfg.sampling.gen_length,
                mask_token_id=model.mask_token_id,
                max_prompt_length=cfg.max_prompt_length,
                truncation=cfg.prompt_truncation,
            )
        self.task = task
        check(
            cfg.sampling.gen_length == self.task.gen_length,
            "sampling.gen_length",
            f"must equal the task's response length {self.task.gen_length}, got {cfg.sampling.gen_length}",
        )
        self.reward_fns = reward_fns or [self.task.reward]
        self.progress = progress
        self.out = Path(cfg.output_dir)
        self.accelerator = make_accelerator(
            mixed_precision=cfg.mixed_precision,
            gradient_accumulation_steps=cfg.grad_accum,
            log_with=None if cfg.log_with == "none" else cfg.log_with,
            project_dir=str(self.out),
        )
        if self.accelerator.is_main_process:
            prepare_run_dir(self.out, resume=resume, overwrite=overwrite, min_free_bytes=self._checkpoint_bytes(model))
        self.accelerator.wait_for_everyone()
        # DeepSpeed steps, clips and skips overflowing fp16 steps inside its engine.
        self._engine_clips = self.accelerator.distributed_type == DistributedType.DEEPSPEED
        rank, world = self.accelerator.process_index, self.accelerator.num_processes
        set_seed(cfg.seed + rank)
        device = self.accelerator.device

        if cfg.teacher == "lora":
            if getattr(model.model, "is_loaded_in_4bit", False):
                # Norms and head in fp32, input gradients on: what peft needs to train adapters on a 4-bit base.
                model.model = prepare_model_for_kbit_training(model.model, cfg.gradient_checkpointing)
            lora = LoraConfig(
                r=cfg.lora.r,
                lora_alpha=cfg.lora.alpha,
                lora_dropout=cfg.lora.dropout,
                target_modules=cfg.lora.target_modules,
            )
            model = add_lora_adapters(model, lora)
        if cfg.gradient_checkpointing:
            model.enable_gradient_checkpointing()
        model.train()
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(
            params, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=cfg.weight_decay
        )
        self.student, self.optimizer = self.accelerator.prepare(model, optimizer)
        self.raw_student: DiffusionLM = self.accelerator.unwrap_model(self.student)
        if cfg.teacher == "lora":
            self.teacher = LoraTeacher(self.raw_student)
        else:
            self.teacher = CopyTeacher(self.raw_student)
        self.ema_state = trainable_state(self.raw_student) if cfg.ema > 0 else None

        self.mask_id = self.raw_student.mask_token_id
        self.sample_generator = torch.Generator(device=device).manual_seed(cfg.seed * 1000 + rank)
        self.batch_generator = torch.Generator().manual_seed(cfg.seed * 1000 + rank + 1)
        # Each rank draws its buffer prompts from its own shard of the pool: no prompt is shared between ranks.
        pool = self.task.prompts(cfg.prompt_pool, split="train", seed=cfg.seed)
        pool = pool.select(range(rank, cfg.prompt_pool, world))
        check(
            len(pool) >= cfg.buffer_prompts,
            "prompt_pool",
            f"{cfg.prompt_pool} prompts over {world} processes leave {len(pool)} per process, "
            f"fewer than buffer_prompts={cfg.buffer_prompts}",
        )
        self.buffer = ReplayBuffer(
            pool, cfg.buffer_prompts, cfg.buffer_completions, cfg.sampling.gen_length, cfg.seed + rank
        )
        self.control = ControlVariate(cfg.control_variate, cfg.adaptive_c, cfg.c_ema)
        self.state = TrainState(c=cfg.control_variate)
        self.log = MetricsLog(self.out / "metrics.jsonl", enabled=self.accelerator.is_main_process)
        if resume and ckpt.latest_checkpoint(self.out) is not None:
            self.load_checkpoint(ckpt.latest_checkpoint(self.out))
        elif self.accelerator.is_main_process:
            save_config(cfg, self.out / "config.yaml")
            self.log.path.unlink(missing_ok=True)  # a run killed before its first checkpoint starts over
        if cfg.log_with != "none":
            self.accelerator.init_trackers("dtm", config=json.loads(json.dumps(cfg.__dict__, default=str)))

    def _checkpoint_bytes(self, model: DiffusionLM) -> int:
        """Disk space the kept checkpoints and the final model need: trainable weights (or LoRA adapters) for student,
        teacher and EMA, and two AdamW moments, in fp32, per checkpoint, times the checkpoints kept at once (one more
        while a new one is written), plus the final model. 1 MB per checkpoint covers the run state (buffer, RNG)."""
        if self.cfg.teacher == "lora":
            trainable = sum(
                self.cfg.lora.r * (m.in_features + m.out_features)
                for name, m in model.model.named_modules()
                if isinstance(m, torch.nn.Linear) and _is_lora_target(name, self.cfg.lora.target_modules)
            )
        else:
            trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        per_checkpoint = 4 * trainable * (5 if self.cfg.ema else 4) + RUN_STATE_BYTES
        kept = (self.cfg.keep_checkpoints or self.cfg.num_phases) + 1
        return per_checkpoint * kept + sum(p.numel() * p.element_size() for p in model.parameters())

    # ---------------------------------------------------------------- rollouts

    def _rollout(self, prompts: PromptBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Teacher rollouts for the buffer, scored by the reward functions."""
        responses = rollout(self.teacher_model, prompts, self.cfg.sampling, self.sample_generator)
        rewards, errors = score(self.reward_fns, responses, prompts.meta)
        self.state.reward_errors += errors
        self.state.rollouts += len(prompts)
        return responses, rewards, self.task.is_correct(responses, prompts.meta)

    @property
    def teacher_model(self) -> DiffusionLM:
        """The teacher as a model for the sampler."""
        teacher = self.teacher
        if isinstance(teacher, CopyTeacher):
            return teacher.model
        return _AdapterView(teacher, self.raw_student)

    # ---------------------------------------------------------------- one step

    def _micro_batch(self, index: int) -> MicroBatch:
        """Micro-batch ``index`` of the current optimizer step: buffer rollouts and their masked states."""
        cfg = self.cfg
        prompts, responses, rewards = self.buffer.sample(cfg.micro_batch, self.batch_generator)
        device = self.accelerator.device
        responses = responses.to(device)
        if cfg.masking == "sar":
            state = sar_masked_states(responses, cfg.sampling.block_length, self.mask_id, self.sample_generator)
        else:
            state = uniform_masked_states(responses, self.mask_id, self.sample_generator)
        return MicroBatch(
            prompts.ids.to(device), prompts.attention_mask.to(device), responses, rewards.to(device), state
        )

    def _micro_step(self, batch: MicroBatch, h: float) -> tuple[torch.Tensor, float, int]:
        """Loss of one micro-batch; returns (loss, c* estimate, tokens)."""
        cfg = self.cfg
        state = batch.state
        x = torch.cat([batch.prompt_ids, state.noisy], dim=1)
        select = torch.cat([torch.zeros_like(batch.prompt_ids, dtype=torch.bool), state.loss_mask], dim=1)
        attention = torch.cat([batch.prompt_mask, torch.ones_like(batch.responses)], dim=1)
        targets = batch.responses[state.loss_mask]
        log_tilt = (h * batch.rewards)[:, None].expand_as(state.loss_mask)[state.loss_mask]
        weights = position_weights(state.loss_mask)

        needs_teacher = cfg.adaptive_c or self.control.value != 0
        with self.accelerator.autocast():
            teacher_logits = self.teacher(x, attention_mask=attention, select=select) if needs_teacher else None
            student_logits = self.student(x, attention_mask=attention, select=select)
        estimate = float("nan")
        if cfg.adaptive_c:
            estimate = optimal_control_variate(student_logits, teacher_logits, targets, log_tilt, weights).item()
        loss = cdtm_loss(
            student_logits, teacher_logits, targets, log_tilt, weights, self.control.value, tilt_shift(log_tilt)
        )
        return loss, estimate, int(x.numel())

    def _optimizer_step(self, h: float) -> dict[str, float]:
        cfg = self.cfg
        total_loss, estimates, tokens = 0.0, [], 0
        # accelerate's accumulate() skips the gradient all-reduce on all but the last micro-batch, and its backward()
        # divides the loss by grad_accum (under DeepSpeed, the engine does both).
        for i in range(cfg.grad_accum):
            with self.accelerator.accumulate(self.student):
                loss, estimate, n = self._micro_step(self._micro_batch(i), h)
                self.accelerator.backward(loss)
            total_loss += loss.item() / cfg.grad_accum
            estimates.append(estimate)
            tokens += n
        # DeepSpeed clips inside its engine and returns no norm.
        grad_norm = self.accelerator.clip_grad_norm_(self.student.parameters(), cfg.grad_clip)
        grad_norm = float("nan") if grad_norm is None else float(grad_norm)
        finite = math.isfinite(total_loss) and (math.isfinite(grad_norm) or self._engine_clips)
        if finite:
            self.optimizer.step()
            self.state.nonfinite_steps = 0
        else:
            self.state.nonfinite_steps += 1
            self.state.skipped_steps += 1
        self.optimizer.zero_grad(set_to_none=True)
        if finite and self.ema_state is not None:
            self._update_ema()
        c_used = self.control.value
        estimate = sum(estimates) / len(estimates)
        if cfg.adaptive_c:
            estimate = self.accelerator.reduce(torch.tensor(estimate, device=self.accelerator.device), "mean").item()
            self.state.c = self.control.update(estimate)
        return {
            "loss": total_loss,
            "grad_norm": grad_norm,
            "grad_norm_clipped": min(grad_norm, cfg.grad_clip) if finite else float("nan"),
            "c": c_used,
            "c_star": estimate,
            "skipped_steps": self.state.skipped_steps,
            "tokens": tokens,
        }

    @torch.no_grad()
    def _update_ema(self) -> None:
        decay = self.cfg.ema
        for name, param in self.raw_student.named_parameters():
            if name in self.ema_state:
                self.ema_state[name].mul_(decay).add_(param.detach(), alpha=1 - decay)

    def _end_phase(self) -> None:
        """Teacher <- student (or its EMA, which also replaces the student); clear the optimizer moments."""
        if self.ema_state is not None:
            load_trainable_state(self.raw_student, self.ema_state)
        self.teacher.sync(trainable_state(self.raw_student))
        self.optimizer.state.clear()

    # ---------------------------------------------------------------- loop

    def train(self) -> DiffusionLM:
        """Run until a = a_end; return the trained student."""
        cfg = self.cfg
        if self.state.step == 0 and cfg.eval_prompts:
            self._log_eval("base")
        bar = tqdm(
            total=cfg.total_steps,
            initial=self.state.step,
            desc="dtm",
            disable=not self.progress or not self.accelerator.is_main_process,
        )
        while self.state.step < cfg.total_steps:
            if self.state.nonfinite_steps >= cfg.max_nonfinite_steps:
                last = ckpt.latest_checkpoint(self.out)
                raise RuntimeError(
                    f"{self.state.nonfinite_steps} consecutive optimizer steps had a non-finite loss or gradient "
                    f"(max_nonfinite_steps={cfg.max_nonfinite_steps}); stopping at step {self.state.step}. "
                    f"The last good checkpoint is {last}; try a lower lr or h, or mixed_precision=no."
                )
            step = self.state.step
            phase, in_phase = divmod(step, cfg.steps_per_h)
            a, h = cfg.phase_tilt(phase)
            if in_phase == 0:
                self.buffer.rebuild(self._rollout)
            elif cfg.refresh_every and cfg.refresh_prompts and in_phase % cfg.refresh_every == 0:
                self.buffer.refresh(cfg.refresh_prompts, self._rollout)
            lr = lr_at(in_phase, cfg.steps_per_h, cfg.lr, cfg.lr_min, cfg.warmup, cfg.decay)
            set_lr(self.optimizer, lr)
            start = time.perf_counter()
            metrics = self._optimizer_step(h)
            tokens_per_s = metrics.pop("tokens") / max(time.perf_counter() - start, 1e-9)
            self.state.step += 1
            phase_done = self.state.step % cfg.steps_per_h == 0
            if phase_done:
                self._end_phase()
            record = {"step": self.state.step, "phase": phase, "a": a, "h": h, "lr": lr, **metrics}
            record.update(self.buffer.stats(), tokens_per_s=tokens_per_s)
            record.update(reward_errors=self.state.reward_errors, rollouts=self.state.rollouts)
            self._log(self._reduce(record))
            bar.update(1)
            bar.set_postfix(
                a=f"{a + h if phase_done else a:.2f}",
                loss=f"{metrics['loss']:.3f}",
                reward=f"{record['reward_mean']:.3f}",
            )
            if phase_done or (cfg.save_every and self.state.step % cfg.save_every == 0):
                self.save_checkpoint()
        bar.close()
        if cfg.eval_prompts:
            self._log_eval("final")
        if self.accelerator.is_main_process:
            self._save_final(self.out / "final")
        self.accelerator.end_training()
        return self.raw_student

    def _reduce(self, record: dict[str, Any]) -> dict[str, Any]:
        """Average per-rank metrics over ranks (counters and throughput are summed)."""
        if self.accelerator.num_processes == 1:
            return record
        keys = [k for k, v in record.items() if isinstance(v, float) and k not in ("a", "h", "lr", "c")]
        summed = ["reward_errors", "rollouts", "tokens_per_s"]
        values = torch.tensor([float(record[k]) for k in keys + summed], device=self.accelerator.device)
        values = self.accelerator.reduce(values, reduction="sum")
        world = self.accelerator.num_processes
        out = dict(record)
        for i, key in enumerate(keys + summed):
            out[key] = values[i].item() / (world if key in keys else 1)
        return out

    def _log(self, record: dict[str, Any]) -> None:
        self.log.write(record)
        if self.cfg.log_with != "none":
            self.accelerator.log({k: v for k, v in record.items() if isinstance(v, int | float)}, step=record["step"])

    def _log_eval(self, tag: str) -> dict[str, float]:
        result = evaluate(self.raw_student, self.task, self.cfg.eval_prompts, self.cfg.sampling, seed=self.cfg.seed)
        self._log({"step": self.state.step, "eval": tag, **result})
        return result

    def _save_final(self, folder: Path) -> None:
        """The student as a plain model folder for ``load_model`` (LoRA: merged into a copy), plus its adapter."""
        if self.cfg.teacher != "lora":
            save_model(self.raw_student, folder / "model")
            return
        peft = self.raw_student.model
        peft.save_pretrained(str(folder / "adapter"), selected_adapters=["student"])
        merged = copy.deepcopy(peft).merge_and_unload(adapter_names=["student"])
        save_model(DiffusionLM(merged, self.mask_id), folder / "model")

    # ---------------------------------------------------------------- checkpoints

    def save_checkpoint(self) -> Path | None:
        """Write ``step-XXXXXXXX`` atomically: weights, teacher, EMA, optimizer, buffer, RNG states, counters."""
        rank_states = gather_object([self._rank_state()])
        if not self.accelerator.is_main_process:
            self.accelerator.wait_for_everyone()
            return None

        def write(tmp: Path) -> None:
            save_file(_contiguous(trainable_state(self.raw_student)), tmp / "student.safetensors")
            save_file(_contiguous(self.teacher.state_dict()), tmp / "teacher.safetensors")
            if self.ema_state is not None:
                save_file(_contiguous(self.ema_state), tmp / "ema.safetensors")
            torch.save(self.optimizer.state_dict(), tmp / "optimizer.pt")
            torch.save({"ranks": rank_states}, tmp / "state.pt")
            (tmp / "trainer_state.json").write_text(json.dumps(self.state.__dict__ | self._tilt(), indent=2))
            save_config(self.cfg, tmp / "config.yaml")

        path = ckpt.atomic_write_dir(self.out / ckpt.checkpoint_name(self.state.step), write)
        ckpt.prune_checkpoints(self.out, self.cfg.keep_checkpoints)
        self.accelerator.wait_for_everyone()
        return path

    def _rank_state(self) -> dict[str, Any]:
        """What differs between ranks: buffer, generators, global RNGs and counters."""
        return {
            "buffer": self.buffer.state_dict(),
            "rng": ckpt.rng_state(),
            "sample_generator": self.sample_generator.get_state().cpu(),
            "batch_generator": self.batch_generator.get_state(),
            "train_state": dict(self.state.__dict__),
        }

    def _tilt(self) -> dict[str, float]:
        phase = self.state.step // self.cfg.steps_per_h
        a = self.cfg.a_end if self.state.step >= self.cfg.total_steps else self.cfg.phase_tilt(phase)[0]
        return {"a": a, "h": self.cfg.phase_tilt(min(phase, self.cfg.num_phases - 1))[1]}

    def load_checkpoint(self, path: str | Path) -> None:
        """Restore everything ``save_checkpoint`` wrote; training continues exactly where it stopped."""
        path = Path(path)
        load_trainable_state(self.raw_student, load_file(path / "student.safetensors"))
        self.teacher.load_state_dict(load_file(path / "teacher.safetensors"))
        if self.ema_state is not None:
            self.ema_state = load_file(path / "ema.safetensors")
        self.optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=False))
        ranks = torch.load(path / "state.pt", weights_only=False)["ranks"]
        if len(ranks) != self.accelerator.num_processes:
            raise ValueError(
                f"checkpoint {path} was written by {len(ranks)} processes; resume it with the same number "
                f"(this run has {self.accelerator.num_processes})"
            )
        state = ranks[self.accelerator.process_index]
        self.buffer.load_state_dict(state["buffer"])
        ckpt.set_rng_state(state["rng"])
        self.sample_generator.set_state(state["sample_generator"])
        self.batch_generator.set_state(state["batch_generator"])
        self.state = TrainState(**state["train_state"])
        self.control.value = self.state.c
        self.log.truncate_after(self.state.step)


class _AdapterView(torch.nn.Module):
    """The LoRA teacher presented as a model for the sampler (same call signature as DiffusionLM)."""

    def __init__(self, teacher: LoraTeacher, model: DiffusionLM) -> None:
        super().__init__()
        self.teacher = teacher
        self.inner = model
        self.mask_token_id = model.mask_token_id

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        select: torch.Tensor | None = None,
        past_key_values: Cache | None = None,
    ) -> torch.Tensor:
        return self.teacher(input_ids, attention_mask=attention_mask, select=select, past_key_values=past_key_values)


def _is_lora_target(name: str, targets: list[str] | str) -> bool:
    """peft's rule: a regular expression matches the full module name, a list entry matches its last parts."""
    if isinstance(targets, str):
        return re.fullmatch(targets, name) is not None
    return any(name == t or name.endswith(f".{t}") for t in targets)


def _contiguous(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous().cpu() for k, v in state.items()}


@torch.no_grad()
def evaluate(
    model: DiffusionLM, task: TokenTask, num_prompts: int, sampling: SamplingConfig, seed: int = 0
) -> dict[str, float]:
    """Held-out metrics: mean reward and accuracy with greedy decoding, mean reward and diversity at the rollout
    temperature."""
    prompts = task.prompts(num_prompts, split="test", seed=seed)
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    greedy = rollout(model, prompts, sampling, generator, temperature=0.0)
    sampled = rollout(model, prompts, sampling, generator)
    sampled_reward = task.reward(sampled, prompts.meta)
    return {
        "eval_reward_greedy": task.reward(greedy, prompts.meta).mean().item(),
        "eval_accuracy_greedy": task.is_correct(greedy, prompts.meta).float().mean().item(),
        "eval_reward_sampled": sampled_reward.mean().item(),
        "eval_accuracy_sampled": task.is_correct(sampled, prompts.meta).float().mean().item(),
    }
