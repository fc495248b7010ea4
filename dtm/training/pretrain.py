"""Masked-diffusion pretraining of the built-in model on a token dataset (base models for synthetic tasks), and the
training loop it shares with ``dtm sft`` (:func:`fit_masked_diffusion`)."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import torch
from accelerate.utils import set_seed
from tqdm.auto import tqdm

from dtm.config import save_config
from dtm.config.pretrain import PretrainConfig
from dtm.config.sft import SFTConfig
from dtm.diffusion.losses import masked_diffusion_loss
from dtm.diffusion.masking import model_inputs, uniform_masked_states
from dtm.models.base import DiffusionLM
from dtm.models.tiny import build_tiny_model, save_model
from dtm.tasks import get_task
from dtm.training.accel import make_accelerator
from dtm.training.data import TokenDataset, from_task, load_jsonl
from dtm.training.logging import MetricsLog
from dtm.training.run_dir import prepare_run_dir
from dtm.training.schedule import adamw, lr_at, set_lr


def pretrain(cfg: PretrainConfig, *, overwrite: bool = False, progress: bool = True) -> DiffusionLM:
    """Train the built-in model with the masked-diffusion ELBO; save it to ``<output_dir>/model``."""
    task = get_task(cfg.task, **cfg.task_options)
    # Read the data before touching output_dir, so a bad data_file leaves no half-made run folder behind.
    dataset: TokenDataset = (
        load_jsonl(cfg.data_file, task.vocab_size) if cfg.data_file else from_task(task, cfg.num_examples, cfg.seed)
    )
    out = prepare_run_dir(cfg.output_dir, overwrite=overwrite, resumable=False)
    save_config(cfg, out / "config.yaml")
    set_seed(cfg.seed)
    model_cfg = dataclasses.replace(cfg.architecture, vocab_size=task.vocab_size, mask_token_id=task.mask_token_id)
    model, is_main = fit_masked_diffusion(build_tiny_model(model_cfg), dataset, cfg, out, progress, "pretrain")
    if is_main:
        save_model(model, Path(out) / "model", cfg.task, cfg.task_options)
    return model


def fit_masked_diffusion(
    model: DiffusionLM,
    dataset: TokenDataset,
    cfg: PretrainConfig | SFTConfig,
    out: Path,
    progress: bool,
    desc: str,
) -> tuple[DiffusionLM, bool]:
    """Train ``model`` on ``dataset`` with the masked-diffusion ELBO (uniformly masked responses, prompts clean) for
    ``cfg.steps`` AdamW steps of ``cfg.batch_size`` random examples, logging to ``out/metrics.jsonl``. Returns the
    trained model and whether this is the main process (which saves it)."""
    if cfg.gradient_checkpointing:
        model.enable_gradient_checkpointing()
    accelerator = make_accelerator(mixed_precision=cfg.mixed_precision)
    optimizer = adamw(model.parameters(), cfg)
    model, optimizer = accelerator.prepare(model, optimizer)
    device = accelerator.device
    generator = torch.Generator(device=device).manual_seed(cfg.seed)
    index_generator = torch.Generator().manual_seed(cfg.seed)
    log = MetricsLog(out / "metrics.jsonl", enabled=accelerator.is_main_process)
    mask_id = accelerator.unwrap_model(model).mask_token_id

    bar = tqdm(range(cfg.steps), desc=desc, disable=not progress or not accelerator.is_main_process)
    start = time.perf_counter()
    for step in bar:
        lr = lr_at(step, cfg.steps, cfg.lr, cfg.lr_min, cfg.lr_warmup, cfg.lr_decay)
        set_lr(optimizer, lr)
        index = torch.randint(len(dataset), (cfg.batch_size,), generator=index_generator)
        prompts, attention, responses = (t.to(device) for t in dataset.batch(index))
        state = uniform_masked_states(responses, mask_id, generator)
        x, select, attention = model_inputs(prompts, attention, state.noisy, state.masked)
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
    return accelerator.unwrap_model(model), accelerator.is_main_process
