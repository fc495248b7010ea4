"""The check to run the day a GPU is available: one command, no downloads, sized to stay within ten minutes on one
GPU (not yet timed on one).

It builds models of LLaDA-8B-Instruct's shape (hidden size 4096, 32 heads, MLP 12288, vocabulary 126464) with fewer
layers and random weights, and on each:

- runs DTM steps (LoRA student and teacher) in bf16, and on a 4-bit NF4 base with gradient checkpointing, measuring
  the peak GPU memory of the run against ``dtm.memory_plan``'s prediction for the same model and batch shape (the
  plan covers the training step; the peak also holds the rollouts' decoding, so it may be higher);
- decodes rollouts with every sampler option (confidence-ordered and random-order remasking; fixed schedule or
  confidence threshold 0.9; no cache, prefix or dual cache), measuring generated tokens per second and forward passes
  per token.

It prints one table and writes the numbers as JSON. The task is ``increment`` with long prompts and responses
(``--prompt-digits``, ``--gen-length``), so the batch has the shape of a real one while the model needs no tokenizer.
``--tiny`` runs the same code on CPU at a small shape (the test suite does, so the script keeps working; memory is
then not measured).

    .venv/bin/python scripts/gpu_check.py --out runs/gpu_check.json            # LLaDA shape, 2 layers, on the GPU
    .venv/bin/python scripts/gpu_check.py --tiny --out /tmp/gpu_check.json     # CPU, seconds
"""

from __future__ import annotations

import argparse
import itertools
import json
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from dtm.config.dtm import DTMConfig
from dtm.config.model import LoadOptions, TinyModelConfig
from dtm.config.run import LoraSection
from dtm.config.sampling import SamplingConfig
from dtm.diffusion.sampler import DecodeStats
from dtm.memory_plan import ModelShape, StepShape, memory_plan
from dtm.models import build_tiny_model, load_model, save_model
from dtm.rollouts import rollout
from dtm.tasks.increment import IncrementTask
from dtm.training.dtm import DTMTrainer

LLADA = ModelShape.llada_8b()
CACHES = ("none", "prefix", "dual")


@dataclass(frozen=True)
class Check:
    """One training set-up to measure."""

    name: str
    four_bit: bool
    checkpointing: bool


CHECKS = (Check("LoRA on the base", False, False), Check("LoRA on a 4-bit NF4 base, checkpointing", True, True))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=2, help="transformer layers of the LLaDA-shaped model")
    parser.add_argument("--steps", type=int, default=4, help="DTM optimizer steps per check")
    parser.add_argument("--micro-batch", type=int, default=4, help="masked states per optimizer step")
    parser.add_argument("--prompt-digits", type=int, default=128, help="prompt length of the increment task")
    parser.add_argument("--gen-length", type=int, default=256, help="response length")
    parser.add_argument("--block-length", type=int, default=32, help="SAR block length")
    parser.add_argument("--lora-r", type=int, default=128, help="LoRA rank (the paper's: 128)")
    parser.add_argument("--rollouts", type=int, default=8, help="prompts decoded per sampler option")
    parser.add_argument("--tiny", action="store_true", help="a small shape on CPU (what the test suite runs)")
    parser.add_argument("--out", type=Path, required=True, help="JSON file for the numbers")
    args = parser.parse_args(argv)
    if args.tiny:
        args.layers, args.steps, args.micro_batch, args.prompt_digits = 1, 1, 2, 6
        args.gen_length, args.block_length, args.lora_r, args.rollouts = 16, 8, 4, 2
    if args.gen_length % args.block_length:
        parser.error(f"--block-length {args.block_length} must divide --gen-length {args.gen_length}")
    return args


def model_shape(args: argparse.Namespace, task: IncrementTask) -> TinyModelConfig:
    """LLaDA-8B's widths with ``args.layers`` layers (``--tiny``: a small model of the same proportions)."""
    length = args.prompt_digits + args.gen_length + 8
    if args.tiny:
        return TinyModelConfig(
            vocab_size=256, mask_token_id=task.mask_token_id, hidden_size=64, num_layers=1, num_heads=4,
            intermediate_size=192, max_length=length,
        )  # fmt: skip
    return TinyModelConfig(
        vocab_size=LLADA.vocab_size,
        mask_token_id=task.mask_token_id,
        hidden_size=LLADA.hidden_size,
        num_layers=args.layers,
        num_heads=LLADA.num_heads,
        intermediate_size=LLADA.intermediate_size,
        max_length=length,
    )


def train_check(check: Check, args: argparse.Namespace, base: Path, out: Path, gpu: bool) -> dict:
    """DTM steps of one set-up: seconds per step, peak GPU memory (None on CPU) and the memory plan's total."""
    cfg = DTMConfig(
        base_model=str(base),
        load=LoadOptions(dtype="bfloat16" if gpu else "float32", load_in_4bit=check.four_bit),
        task="increment",
        task_options={"num_digits": args.prompt_digits, "gen_length": args.gen_length},
        finetune="lora",
        lora=LoraSection(r=args.lora_r, alpha=2 * args.lora_r),
        gradient_checkpointing=check.checkpointing,
        mixed_precision="bf16" if gpu else "no",
        output_dir=str(out),
        h=1.0,
        a_end=1.0,
        steps_per_h=args.steps,
        buffer_prompts=args.micro_batch,
        buffer_completions=1,
        refresh_every=0,
        refresh_prompts=0,
        prompt_pool=args.micro_batch,
        micro_batch=args.micro_batch,
        eval_prompts=0,
        sampling=SamplingConfig(gen_length=args.gen_length, block_length=args.block_length, decode_batch=64),
    )
    if gpu:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    trainer = DTMTrainer(cfg, progress=False)
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    prompt_length = trainer.buffer.pool.ids.shape[1]
    shape = ModelShape.from_hf_config(trainer.raw_student.model.config)
    step = StepShape(args.micro_batch, prompt_length, args.gen_length, args.block_length)
    plan = memory_plan(shape, step, lora_r=args.lora_r, four_bit=check.four_bit, checkpointing=check.checkpointing)
    peak = torch.cuda.max_memory_allocated() / 1e9 if gpu else None
    del trainer
    return {
        "check": check.name,
        "seconds_per_step": seconds / args.steps,
        "peak_gb": peak,
        "plan_gb": plan["total"],
        "plan": plan,
        "prompt_length": prompt_length,
    }


@torch.no_grad()
def decode_check(model, task: IncrementTask, args: argparse.Namespace) -> list[dict]:
    """Generated tokens per second and forward passes per token of every decoder option on the same prompts (with
    random weights the model is never confident, so threshold decoding commits one token per round here)."""
    prompts = task.prompts(args.rollouts, split="test", seed=0)
    rows = []
    for remasking, threshold, cache in itertools.product(("low_confidence", "random"), (None, 0.9), CACHES):
        sampling = SamplingConfig(
            gen_length=args.gen_length,
            block_length=args.block_length,
            temperature=1.0,
            remasking=remasking,
            threshold=threshold,
            cache=cache,
            decode_batch=args.rollouts,
        )
        stats = DecodeStats.zeros(len(prompts))
        start = time.perf_counter()
        generator = torch.Generator(device=next(model.parameters()).device).manual_seed(0)
        responses = rollout(model, prompts, sampling, generator, stats=stats)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        assert responses.shape == (args.rollouts, args.gen_length)
        rows.append(
            {
                "remasking": remasking,
                "threshold": threshold,
                "cache": cache,
                "tokens_per_s": responses.numel() / seconds,
                "passes_per_token": float(stats.passes.double().mean()) / args.gen_length,
            }
        )
    return rows


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    gpu = torch.cuda.is_available() and not args.tiny
    task = IncrementTask(num_digits=args.prompt_digits, gen_length=args.gen_length)
    shape = model_shape(args, task)
    with tempfile.TemporaryDirectory() as scratch:
        base = Path(scratch) / "base"
        torch.manual_seed(0)
        model = build_tiny_model(shape)
        save_model(model.to(torch.bfloat16) if gpu else model, base)
        del model
        training = [train_check(c, args, base, Path(scratch) / f"run{i}", gpu) for i, c in enumerate(CHECKS)]
        decoder = load_model(base, dtype="bfloat16" if gpu else "float32")
        if gpu:
            decoder = decoder.cuda()
        decoding = decode_check(decoder, task, args)
    result = {
        "device": torch.cuda.get_device_name() if gpu else "cpu",
        "dtype": "bfloat16" if gpu else "float32",
        "model": asdict(shape),
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "training": training,
        "decoding": decoding,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    width = f"{shape.hidden_size} wide x {shape.num_layers} layers, vocab {shape.vocab_size}"
    print(f"{result['device']}, {result['dtype']} model {width}")
    print("| training | s / step | peak GB | plan GB |\n|---|---:|---:|---:|")
    for row in training:
        peak = "-" if row["peak_gb"] is None else f"{row['peak_gb']:.1f}"
        print(f"| {row['check']} | {row['seconds_per_step']:.2f} | {peak} | {row['plan_gb']:.1f} |")
    print("| decoding | threshold | cache | tokens / s | passes / token |\n|---|---|---|---:|---:|")
    for row in decoding:
        print(
            f"| {row['remasking']} | {row['threshold']} | {row['cache']} | {row['tokens_per_s']:.0f} | "
            f"{row['passes_per_token']:.2f} |"
        )
    print(f"numbers: {args.out}")
    return result


if __name__ == "__main__":
    main()
