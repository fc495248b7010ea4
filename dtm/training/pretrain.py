"""Masked-diffusion pretraining of the built-in model on a token dataset (base models for synthetic tasks)."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from accelerate.utils import set_seed
from tqdm.auto import tqdm

from dtm.config import check, save_config
from dtm.diffusion.losses import masked_diffusion_loss
from dtm.diffusion.masking import uniform_masked_states
from dtm.models.base import DiffusionLM
from dtm.models.tiny import TinyModelConfig, build_tiny_model, save_model
from dtm.tasks import get_task
from dtm.training.accel import make_accelerator
from dtm.training.data import TokenDataset, from_task, load_jsonl
from dtm.training.logging import MetricsLog, prepare_run_dir
from dtm.training.schedule import lr_at, set_lr


@dataclass
class PretrainConfig:
    """Settings of ``dtm pretrain``. The model's vocabulary and mask token come from the task."""

    task: str = "increment"
    task_options: dict[str, Any] = field(default_factory=dict)
    data_file: str | None = None
    num_examples: int = 20000
    model: TinyModelConfig = field(default_factory=TinyModelConfig)
    steps: int = 1500
    batch_size: int = 64
    lr: float = 3e-3
    lr_min: float = 3e-4
    warmup: float = 0.05
    decay: float = 0.5
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    seed: int = 0
    output_dir: str = "runs/pretrain"
    log_every: int = 10
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"
    gradient_checkpointing: bool = False

    def __post_init__(self) -> None:
        check(self.steps > 0, "steps", f"must be positive, got {self.steps}")
        check(self.batch_size > 0, "batch_size", f"must be positive, got {self.batch_size}")
        check(self.num_examples > 0, "num_examples", f"must be positive, got {self.num_examples}")
        check(self.lr > 0, "lr", f"must be positive, got {self.lr}")
        check(0 <= self.lr_min <= self.lr, "lr_min", f"must be in [0, lr={self.lr}], got {self.lr_min}")
        check(self.warmup >= 0, "warmup", f"must be >= 0, got {self.warmup}")
        check(self.decay >= 0, "decay", f"must be >= 0, got {self.decay}")
        check(0 <= self.warmup + self.decay <= 1, "warmup", "warmup + decay must be a fraction in [0, 1]")
        check(self.grad_clip > 0, "grad_clip", f"must be positive, got {self.grad_clip}")
        check(self.log_every > 0, "log_every", f"must be positive, got {self.log_every}")


def pretrain(cfg: PretrainConfig, *, overwrite: bool = False, progress: bool = True) -> DiffusionLM:
    """Train the built-in model with the masked-diffusion ELBO; save it to ``<output_dir>/model``."""
    task = get_task(cfg.task, **cfg.task_options)
    # Read the data before touching output_dir, so a bad data_file leaves no half-made run folder behind.
    dataset: TokenDataset = (
        load_jsonl(cfg.data_file, task.vocab_size) if cfg.data_file else from_task(task, cfg.num_examples, cfg.seed)
    )
    out = prepare_run_dir(cfg.output_dir, overwrite=overwrite)
    save_config(cfg, out / "config.yaml")
    set_seed(cfg.seed)
    model_cfg = dataclasses.replace(cfg.model, vocab_size=task.vocab_size, mask_token_id=task.mask_token_id)
    model = build_tiny_model(model_cfg)
    if cfg.gradient_checkpointing:
        model.enable_gradient_checkpointing()

    accelerator = make_accelerator(mixed_precision=cfg.mixed_precision)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    model, optimizer = accelerator.prepare(model, optimizer)
    device = accelerator.device
    generator = torch.Generator(device=device).manual_seed(cfg.seed)
    index_generator = torch.Generator().manual_seed(cfg.seed)
    log = MetricsLog(out / "metrics.jsonl", enabled=accelerator.is_main_process)
    mask_id = task.mask_token_id

    bar = tqdm(range(cfg.steps), desc="pretrain", disable=not progress or not accelerator.is_main_process)
    start = time.perf_counter()
    for step in bar:
        lr = lr_at(step, cfg.steps, cfg.lr, cfg.lr_min, cfg.warmup, cfg.decay)
        set_lr(optimizer, lr)
        index = torch.randint(len(dataset), (cfg.batch_size,), generator=index_generator)
        prompts, attention, responses = (t.to(device) for t in dataset.batch(index))
        state = uniform_masked_states(responses, mask_id, generator)
        x = torch.cat([prompts, state.noisy], dim=1)
        select = torch.cat([torch.zeros_like(prompts, dtype=torch.bool), state.masked], dim=1)
        attention = torch.cat([attention, torch.ones_like(responses)], dim=1)
        with accelerator.autocast():
            logits = model(x, attention_mask=attention, select=select)
        loss = masked_diffusion_loss(logits, responses[state.masked], state.masked, state.mask_prob)
        optimizer.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        grad_norm = accelerator.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        if step % cfg.log_every == 0 or step == cfg.steps - 1:
            record = {"step": step, "loss": loss.item(), "lr": lr, "grad_norm": float(grad_norm)}
            record["elapsed_s"] = round(time.perf_counter() - start, 2)
            log.write(record)
            bar.set_postfix(loss=f"{record['loss']:.3f}")
    model = accelerator.unwrap_model(model)
    if accelerator.is_main_process:
        save_model(model, Path(out) / "model")
    return model
