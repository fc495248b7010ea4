"""The frozen teacher pi_a beside the trained student pi_theta.

Two layouts, one interface:
- ``CopyTeacher``: a frozen deep copy of the student (small models, full fine-tuning).
- ``LoraTeacher``: two LoRA adapters, ``student`` and ``teacher``, on one frozen base (peft); the teacher's forward
  switches the active adapter. This is how 8B models fit: the base weights exist once.
``sync(source)`` copies trainable weights (the student's, or their EMA) into the teacher at a phase boundary.
"""

from __future__ import annotations

import copy

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from torch import nn
from transformers import Cache

from dtm.models.base import DiffusionLM

STUDENT, TEACHER = "student", "teacher"


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Detached copies of the parameters that train (the student's weights or adapter)."""
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def load_trainable_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in state.items():
            params[name].copy_(value)


class CopyTeacher:
    """A frozen full copy of the student."""

    def __init__(self, student: DiffusionLM) -> None:
        self.model = copy.deepcopy(student).eval().requires_grad_(False)

    @torch.no_grad()
    def __call__(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, select: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self.model(input_ids, attention_mask=attention_mask, select=select)

    def sync(self, state: dict[str, torch.Tensor]) -> None:
        load_trainable_state(self.model, state)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.model.load_state_dict(state)


class LoraTeacher:
    """The ``teacher`` adapter of a peft model whose ``student`` adapter trains."""

    def __init__(self, student: DiffusionLM) -> None:
        self.student = student
        self.peft: PeftModel = student.model

    def _teacher_params(self) -> dict[str, nn.Parameter]:
        tag = f".{TEACHER}."
        return {n: p for n, p in self.student.named_parameters() if tag in n}

    @torch.no_grad()
    def __call__(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        select: torch.Tensor | None = None,
        past_key_values: Cache | None = None,
        position_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        was_training = self.student.training
        self.peft.set_adapter(TEACHER, inference_mode=True)
        self.student.eval()
        try:
            return self.student(
                input_ids,
                attention_mask=attention_mask,
                select=select,
                past_key_values=past_key_values,
                position_ids=position_ids,
            )
        finally:
            self.peft.set_adapter(STUDENT)
            self.student.train(was_training)

    def sync(self, state: dict[str, torch.Tensor]) -> None:
        student_tag, teacher_tag = f".{STUDENT}.", f".{TEACHER}."
        params = self._teacher_params()
        with torch.no_grad():
            for name, value in state.items():
                params[name.replace(student_tag, teacher_tag)].copy_(value)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {n: p.detach().clone() for n, p in self._teacher_params().items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        params = self._teacher_params()
        with torch.no_grad():
            for name, value in state.items():
                params[name].copy_(value)


def frozen_teacher(student: DiffusionLM, lora: bool) -> CopyTeacher | LoraTeacher:
    """The frozen copy of ``student`` beside it: its ``teacher`` adapter (LoRA) or a full deep copy."""
    return LoraTeacher(student) if lora else CopyTeacher(student)


def add_lora_adapters(model: DiffusionLM, config: LoraConfig) -> DiffusionLM:
    """Wrap the model's network with identical ``student`` and ``teacher`` LoRA adapters; only the student trains."""
    peft_model = get_peft_model(model.model, config, adapter_name=STUDENT)
    peft_model.add_adapter(TEACHER, config)
    peft_model.set_adapter(STUDENT)
    wrapped = DiffusionLM(peft_model, model.mask_token_id)
    LoraTeacher(wrapped).sync(trainable_state(wrapped))
    return wrapped
