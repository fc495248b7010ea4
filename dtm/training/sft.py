"""``dtm sft``: masked-diffusion supervised fine-tuning of a model folder on text tasks' demonstrations.

Each example is a task's train prompt, rendered by the model's chat template with its generation prompt (as at
evaluation), and the task's demonstration as the assistant's turn: the template's rendering of the answer and its
end-of-turn marker, padded with EOS to ``response_length`` (LLaDA's SFT recipe: the model learns where a response
ends by filling the padding with EOS). Demonstrations longer than ``response_length`` are left out and counted. The
loss is the masked-diffusion ELBO over the response with the prompt clean, as in pretraining; the fine-tuned model
and its tokenizer are saved to ``<output_dir>/model``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from accelerate.utils import set_seed

from dtm.config import save_config
from dtm.config.sft import SFTConfig
from dtm.models.base import DiffusionLM
from dtm.models.convert import save_with_tokenizer
from dtm.models.loading import load_tokenizer, load_with_options, model_mask_token_id
from dtm.tasks import build_task
from dtm.tasks.tokenized import TokenizedTextTask
from dtm.training.data import TokenDataset, left_pad
from dtm.training.pretrain import fit_masked_diffusion
from dtm.training.run_dir import prepare_run_dir

DATA_FILE = "data.json"


def demonstration_data(
    tasks: dict[str, TokenizedTextTask], examples: int, seed: int
) -> tuple[TokenDataset, dict[str, dict[str, Any]]]:
    """The mixed dataset of every task's train demonstrations that fit its ``gen_length``, and per task how many
    examples were drawn and kept, and the longest prompt and response (in tokens)."""
    prompt_rows: list[list[int]] = []
    responses: list[torch.Tensor] = []
    summary: dict[str, dict[str, Any]] = {}
    for name, task in tasks.items():
        prompts = task.prompts(examples, split="train", seed=seed)
        lengths = [len(task.response_ids(meta)) for meta in prompts.meta]
        keep = [i for i, length in enumerate(lengths) if length <= task.gen_length]
        summary[name] = {
            "drawn": len(prompts),
            "kept": len(keep),
            "longest_prompt": int(prompts.attention_mask.sum(1).max()),
            "longest_response": max(lengths),
        }
        if not keep:
            continue
        kept = prompts.select(keep)
        prompt_rows += [ids[mask.bool()].tolist() for ids, mask in zip(kept.ids, kept.attention_mask, strict=True)]
        responses.append(task.demonstrations(kept, torch.Generator()))
    if not responses:
        raise ValueError(f"no demonstration fits response_length: {summary}")
    ids, attention = left_pad(prompt_rows, next(iter(tasks.values())).pad_token_id)  # one tokenizer: one pad id
    return TokenDataset(ids, attention, torch.cat(responses)), summary


def sft(cfg: SFTConfig, *, overwrite: bool = False, progress: bool = True) -> DiffusionLM:
    """Fine-tune ``cfg.base_model`` on the demonstrations of ``cfg.tasks``; save it with its tokenizer."""
    tokenizer = load_tokenizer(cfg.base_model, cfg.load.trust_remote_code)
    if tokenizer is None:
        raise ValueError(f"base_model: {cfg.base_model} has no tokenizer; dtm sft learns text through one")
    mask_id = model_mask_token_id(cfg.base_model, tokenizer, cfg.load)
    tasks = {
        name: build_task(
            name,
            options,
            tokenizer=tokenizer,
            gen_length=cfg.response_length,
            mask_token_id=mask_id,
            max_prompt_length=cfg.max_prompt_length,
        )
        for name, options in cfg.tasks.items()
    }
    # The data is built before the run folder and the weights, so that a bad task option fails at once.
    dataset, summary = demonstration_data(tasks, cfg.examples_per_task, cfg.seed)
    out = prepare_run_dir(cfg.output_dir, overwrite=overwrite, resumable=False)
    save_config(cfg, out / "config.yaml")
    (out / DATA_FILE).write_text(json.dumps(summary, indent=2) + "\n")
    set_seed(cfg.seed)
    model = load_with_options(cfg.base_model, cfg.load, tokenizer)
    model, is_main = fit_masked_diffusion(model, dataset, cfg, out, progress, "sft")
    if is_main:
        save_with_tokenizer(model, tokenizer, Path(out) / "model")
    return model
