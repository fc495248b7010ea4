"""DTM optimizer step vs a plain masked-diffusion SFT step on the same batch, built from the library functions.

- DTM step (what ``dtm.training.dtm`` does per micro-batch): SAR-aligned masked states, teacher forward under
  ``no_grad`` (a frozen copy, as ``CopyTeacher``), student forward, c-DTM loss (c = 1) at the active-block loss
  positions, backward, gradient clipping, AdamW step;
- SFT step (the reference): uniform masking of the response, student forward, masked-diffusion ELBO on the masked
  positions, backward, gradient clipping, AdamW step.

The DTM step does one extra forward pass (the teacher's) and no extra backward, so with a forward costing about a
third of forward + backward the ideal ratio is about 1.33x; the target is <= 1.6x. Steps alternate (SFT, DTM, SFT,
...) and the medians are compared. Both optimizers start from the same weights; weights diverge over the repetitions,
which does not change the cost of a step.

    .venv/bin/python benchmarks/dtm_step.py     # batch 32, prompt 64, gen length 128, block 32, hidden 128, vocab 64
"""

from __future__ import annotations

import argparse
import copy

import torch
from common import median, peak_rss_mb, report_times, scaled_model, summary_line, time_alternating

from dtm.diffusion.losses import cdtm_loss, masked_diffusion_loss, position_weights
from dtm.diffusion.masking import sar_masked_states, uniform_masked_states
from dtm.models import DiffusionLM, TinyModelConfig


def optimizer_for(model: DiffusionLM) -> torch.optim.Optimizer:
    """AdamW with the trainer's defaults (the paper's settings)."""
    return torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.1)


def finish_step(model: DiffusionLM, optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> float:
    """Backward, clip to norm 1, step, clear gradients; return the loss value."""
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.item()


def dtm_step(
    student: DiffusionLM,
    teacher: DiffusionLM,
    optimizer: torch.optim.Optimizer,
    prompt: torch.Tensor,
    response: torch.Tensor,
    rewards: torch.Tensor,
    args: argparse.Namespace,
    generator: torch.Generator,
) -> float:
    """One c-DTM optimizer step (no gradient accumulation)."""
    state = sar_masked_states(response, args.block, student.mask_token_id, generator)
    x = torch.cat([prompt, state.noisy], dim=1)
    select = torch.cat([torch.zeros_like(prompt, dtype=torch.bool), state.loss_mask], dim=1)
    with torch.no_grad():
        teacher_logits = teacher(x, select=select)
    student_logits = student(x, select=select)
    log_tilt = (args.h * rewards)[:, None].expand_as(state.loss_mask)[state.loss_mask]
    targets = response[state.loss_mask]
    loss = cdtm_loss(student_logits, teacher_logits, targets, log_tilt, position_weights(state.loss_mask), c=1.0)
    return finish_step(student, optimizer, loss)


def sft_step(
    model: DiffusionLM,
    optimizer: torch.optim.Optimizer,
    prompt: torch.Tensor,
    response: torch.Tensor,
    generator: torch.Generator,
) -> float:
    """One masked-diffusion SFT optimizer step."""
    state = uniform_masked_states(response, model.mask_token_id, generator)
    x = torch.cat([prompt, state.noisy], dim=1)
    select = torch.cat([torch.zeros_like(prompt, dtype=torch.bool), state.masked], dim=1)
    logits = model(x, select=select)
    loss = masked_diffusion_loss(logits, response[state.masked], state.masked, state.mask_prob)
    return finish_step(model, optimizer, loss)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--prompt", type=int, default=64)
    parser.add_argument("--gen", type=int, default=128)
    parser.add_argument("--block", type=int, default=32)
    parser.add_argument("--vocab", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--h", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    cfg = TinyModelConfig(
        vocab_size=args.vocab,
        hidden_size=args.hidden,
        num_layers=args.layers,
        num_heads=4,
        intermediate_size=args.hidden * 2,
        max_length=args.prompt + args.gen,
    )
    base = scaled_model(cfg).train()
    sft_model, student = copy.deepcopy(base), copy.deepcopy(base)
    teacher = copy.deepcopy(base).eval().requires_grad_(False)
    sft_opt, dtm_opt = optimizer_for(sft_model), optimizer_for(student)

    g = torch.Generator().manual_seed(1)
    prompt = torch.randint(2, args.vocab, (args.batch, args.prompt), generator=g)
    response = torch.randint(2, args.vocab, (args.batch, args.gen), generator=g)
    rewards = torch.rand(args.batch, generator=g)
    sft_gen, dtm_gen = torch.Generator().manual_seed(2), torch.Generator().manual_seed(3)

    variants = {
        "sft": lambda: sft_step(sft_model, sft_opt, prompt, response, sft_gen),
        "dtm": lambda: dtm_step(student, teacher, dtm_opt, prompt, response, rewards, args, dtm_gen),
    }
    times, results = time_alternating(variants, args.repeats, warmup=2)
    ratio = median(times["dtm"]) / median(times["sft"])
    params = sum(p.numel() for p in base.parameters())
    print(
        f"Optimizer step: batch {args.batch}, prompt {args.prompt}, gen length {args.gen}, block {args.block}; "
        f"model vocab {args.vocab}, hidden {args.hidden}, {args.layers} layers ({params / 1e6:.2f}M params); "
        f"{args.threads} threads"
    )
    report_times(times, unit="ms")
    print(f"  losses finite: {all(torch.isfinite(torch.tensor(v)) for v in results.values())}")
    print(f"  time ratio DTM / SFT: {ratio:.2f}x   (ideal ~1.33x; peak RSS of this process {peak_rss_mb():.0f} MiB)")
    summary_line("DTM step / SFT step", ratio, "<= 1.6x (ideal ~1.33x)")


if __name__ == "__main__":
    main()
