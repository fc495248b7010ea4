"""The DTM trainer: annealed reward tilting by distilling pi_a (teacher) into pi_{a+h} (student).

Read ``train`` top to bottom: each optimizer step draws buffer rollouts, builds masked states, runs the teacher
(no gradient) and the student at the loss positions, and minimises the c-DTM loss. Every ``steps_per_h`` steps a phase
ends: a += h, the teacher becomes the student (or its EMA), the optimizer moments are cleared, the LR schedule
restarts and the buffer is rebuilt with the new teacher.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from transformers import Cache

from dtm.config.dtm import DTMConfig
from dtm.diffusion.losses import (
    ControlVariate,
    cdtm_loss,
    leave_one_out_log_mean_exp,
    optimal_control_variate,
    position_weights,
    tilt_shift,
)
from dtm.diffusion.masking import MaskedState, masked_states, model_inputs
from dtm.models.base import DiffusionLM
from dtm.training.buffer import ReplayBuffer
from dtm.training.schedule import lr_at, set_lr
from dtm.training.teacher import CopyTeacher, LoraTeacher, frozen_teacher, load_trainable_state, trainable_state
from dtm.training.trainer import RUN_STATE_BYTES, RunState, Trainer

__all__ = [
    "RUN_STATE_BYTES",
    "DTMConfig",
    "DTMTrainer",
    "MicroBatch",
    "TrainState",
]


@dataclass
class MicroBatch:
    """One micro-batch: left-padded prompts, their clean responses, each rollout's log tilt weight (h r, or
    h r - log Z-hat with per-prompt normalisation) and control variate (None: the trainer's constant or adaptive c),
    and the responses' masked states."""

    prompt_ids: torch.Tensor
    prompt_mask: torch.Tensor
    responses: torch.Tensor
    log_tilt: torch.Tensor
    c: torch.Tensor | None
    state: MaskedState


@dataclass
class TrainState(RunState):
    """Counters saved in every checkpoint, and the control variate in use."""

    c: float = 1.0


class DTMTrainer(Trainer):
    """Runs DTM on a task. ``reward_fns`` (summed) default to the task's own reward."""

    nonfinite_hint = "try a lower lr or h, or mixed_precision=no"
    rank_constant_metrics = ("a", "h", "lr", "c")

    cfg: DTMConfig

    def _build_state(self) -> None:
        cfg = self.cfg
        self.teacher = frozen_teacher(self.raw_student, lora=self.uses_lora)
        self.ema_state = trainable_state(self.raw_student) if cfg.ema > 0 else None
        pool = self._prompt_pool(cfg.buffer_prompts, "buffer_prompts")
        rank = self.accelerator.process_index
        self.buffer = ReplayBuffer(
            pool, cfg.buffer_prompts, cfg.buffer_completions, cfg.sampling.gen_length, cfg.seed + rank
        )
        self.control = ControlVariate(cfg.control_variate, cfg.adaptive_c, cfg.c_ema)
        self.state = TrainState(c=cfg.control_variate)

    def _checkpoint_copies(self) -> int:
        """Student, teacher, two AdamW moments, and the EMA when on."""
        return 5 if self.cfg.ema else 4

    def _checkpoints_kept(self) -> int:
        return self.cfg.keep_checkpoints or self.cfg.num_phases

    @property
    def rollout_model(self) -> DiffusionLM:
        """The teacher as a model for the sampler: DTM's buffer holds teacher rollouts."""
        teacher = self.teacher
        if isinstance(teacher, CopyTeacher):
            return teacher.model
        return _AdapterView(teacher, self.raw_student)

    # ---------------------------------------------------------------- one step

    def _micro_batch(self, h: float) -> MicroBatch:
        """One micro-batch of the current optimizer step: buffer rollouts, their tilt weights and control variates,
        and their masked states."""
        cfg = self.cfg
        prompts, responses, rewards, rows = self.buffer.sample(cfg.micro_batch, self.batch_generator)
        log_tilt, c = h * rewards.double(), None
        if cfg.prompt_baseline or cfg.tilt_normalization == "prompt":
            log_z = leave_one_out_log_mean_exp(h * self.buffer.group_rewards().double()).flatten()[rows]
            c = torch.exp(log_z) if cfg.prompt_baseline else torch.full_like(log_z, self.control.value)
            if cfg.tilt_normalization == "prompt":
                log_tilt, c = log_tilt - log_z, c * torch.exp(-log_z)
        device = self.accelerator.device
        responses = responses.to(device)
        state = masked_states(responses, cfg.masking, cfg.sampling.block_length, self.mask_id, self.sample_generator)
        return MicroBatch(
            prompts.ids.to(device),
            prompts.attention_mask.to(device),
            responses,
            log_tilt.float().to(device),
            None if c is None else c.float().to(device),
            state,
        )

    def _micro_step(self, batch: MicroBatch) -> tuple[torch.Tensor, float, int]:
        """Loss of one micro-batch; returns (loss, c* estimate, tokens)."""
        cfg = self.cfg
        state = batch.state
        x, select, attention = model_inputs(batch.prompt_ids, batch.prompt_mask, state.noisy, state.loss_mask)
        targets = batch.responses[state.loss_mask]
        per_position = batch.log_tilt[:, None].expand_as(state.loss_mask)
        log_tilt = per_position[state.loss_mask]
        c: float | torch.Tensor = self.control.value
        if batch.c is not None:
            c = batch.c[:, None].expand_as(state.loss_mask)[state.loss_mask]
        weights = position_weights(state.loss_mask)

        needs_teacher = cfg.adaptive_c or isinstance(c, torch.Tensor) or c != 0
        with self.accelerator.autocast():
            teacher_logits = self.teacher(x, attention_mask=attention, select=select) if needs_teacher else None
            student_logits = self.student(x, attention_mask=attention, select=select)
        estimate = float("nan")
        if cfg.adaptive_c:
            estimate = optimal_control_variate(student_logits, teacher_logits, targets, log_tilt, weights).item()
        loss = cdtm_loss(student_logits, teacher_logits, targets, log_tilt, weights, c, tilt_shift(log_tilt))
        return loss, estimate, int(x.numel())

    def _optimizer_step(self, h: float) -> dict[str, float]:
        cfg = self.cfg
        total_loss, estimates, tokens, c_values = 0.0, [], 0, []
        # accelerate's accumulate() skips the gradient all-reduce on all but the last micro-batch, and its backward()
        # divides the loss by grad_accum (under DeepSpeed, the engine does both).
        for _ in range(cfg.grad_accum):
            with self.accelerator.accumulate(self.student):
                batch = self._micro_batch(h)
                loss, estimate, n = self._micro_step(batch)
                self.accelerator.backward(loss)
            total_loss += loss.item() / cfg.grad_accum
            estimates.append(estimate)
            tokens += n
            c_values.append(self.control.value if batch.c is None else batch.c.mean().item())
        grad_norm, finite = self._apply_gradients(total_loss)
        if finite and self.ema_state is not None:
            self._update_ema()
        c_used = sum(c_values) / len(c_values)
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

    @property
    def total_steps(self) -> int:
        return self.cfg.total_steps

    def _step(self) -> dict[str, Any]:
        """One optimizer step of the current phase. At a phase's first step the buffer is rebuilt from the teacher
        (then the ``train`` callback hears ``"phase_start"``, with step, phase, a and h: the teacher is the phase's
        pi_a), at every ``refresh_every``-th a part of it is refreshed; after its last step the phase ends: the
        teacher becomes the student (or its EMA) and the optimizer moments are cleared."""
        cfg = self.cfg
        self._check_nonfinite()
        step = self.state.step
        phase, in_phase = divmod(step, cfg.steps_per_h)
        a, h = cfg.phase_tilt(phase)
        if in_phase == 0:
            self.buffer.rebuild(self._rollout)
            self._notify("phase_start", {"step": step, "phase": phase, "a": a, "h": h})
        elif cfg.refresh_every and cfg.refresh_prompts and in_phase % cfg.refresh_every == 0:
            self.buffer.refresh(cfg.refresh_prompts, self._rollout)
        lr = lr_at(in_phase, cfg.steps_per_h, cfg.lr, cfg.lr_min, cfg.lr_warmup, cfg.lr_decay)
        set_lr(self.optimizer, lr)
        start = time.perf_counter()
        metrics = self._optimizer_step(h)
        tokens_per_s = metrics.pop("tokens") / max(time.perf_counter() - start, 1e-9)
        self.state.step += 1
        if self._checkpoint_due():
            self._end_phase()
        record = {"step": self.state.step, "phase": phase, "a": a, "h": h, "lr": lr, **metrics}
        record.update(self.buffer.stats(), tokens_per_s=tokens_per_s)
        return record

    def _checkpoint_due(self) -> bool:
        """A phase has just ended."""
        return self.state.step % self.cfg.steps_per_h == 0

    def _postfix(self, record: dict[str, Any]) -> dict[str, str]:
        a = record["a"] + record["h"] if self._checkpoint_due() else record["a"]
        return {"a": f"{a:.2f}"} | super()._postfix(record)

    # ---------------------------------------------------------------- checkpoints

    def _extra_tensors(self) -> dict[str, dict[str, torch.Tensor]]:
        extra = {"teacher": self.teacher.state_dict()}
        if self.ema_state is not None:
            extra["ema"] = self.ema_state
        return extra

    def _load_extra_tensors(self, path: Path) -> None:
        self.teacher.load_state_dict(load_file(path / "teacher.safetensors"))
        if self.ema_state is not None:
            self.ema_state = load_file(path / "ema.safetensors")

    def _summary(self) -> dict[str, Any]:
        return self.state.__dict__ | self._tilt()

    def _tilt(self) -> dict[str, float]:
        phase = self.state.step // self.cfg.steps_per_h
        a = self.cfg.a_end if self.state.step >= self.cfg.total_steps else self.cfg.phase_tilt(phase)[0]
        return {"a": a, "h": self.cfg.phase_tilt(min(phase, self.cfg.num_phases - 1))[1]}

    def _after_load(self) -> None:
        self.control.value = self.state.c


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
        position_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return self.teacher(
            input_ids,
            attention_mask=attention_mask,
            select=select,
            past_key_values=past_key_values,
            position_ids=position_ids,
        )

    def check_kv_cache(self) -> None:
        self.inner.check_kv_cache()
