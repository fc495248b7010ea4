"""Fast decoding: confidence-threshold parallel decoding and key/value caches against the plain sampler, same run.

Every option decodes the same prompts with ``dtm.diffusion.sampler.generate``; the reference is the plain sampler
(fixed schedule, steps = gen length / 2, no cache). Per option and generation length (256 and 512, block 32):
forward passes per generated token, positions run through the model and model FLOPs per sequence (from the
sampler's per-row counts: for this model, and for LLaDA-8B's shape from the same counts), wall time, and, for greedy
options, the fraction of responses identical to the reference's.

The model is the built-in model shaped so that its backbone / output-head cost ratio per position is LLaDA-8B's:
LLaDA-8B's layers hold 13 h^2 projection weights each (q, k, v, o: 4 h^2; gate, up, down with an MLP of 3 h: 9 h^2),
so 32 layers against a 126,464-token head give 32 * 13 * 4096 / 126464 = 13.5; hidden 128 and MLP 384 (3 h) over 2
layers against a 256-token head give 2 * 13 * 128 / 256 = 13.0. (Attention over the context is a larger share here:
its cost per position grows with hidden size times context length, the projections' with hidden size squared.)

How many tokens a threshold round commits depends on how sure the model is. Two models of this shape bracket it: one
pretrained per generation length on ``increment`` with 64 digits from 252 values, each copied with probability 0.95
and followed by end-of-sequence padding (1500 steps: it learns the padding and part of the copying, so it is sure of
some positions and unsure of others), and the same shape with random weights (sure of nothing: one token per
round). The first is trained once per length (about 8 minutes at 256 and 25 at 512 here) and kept under
``--model-root``.

    .venv/bin/python benchmarks/fast_decoding.py             # both lengths; numbers in runs/bench/fast_decoding.json
    .venv/bin/python benchmarks/fast_decoding.py --gen 256
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from common import median, peak_rss_mb, summary_line, time_alternating

from dtm.config import load_config
from dtm.config.choices import KVCache, Remasking
from dtm.config.model import TinyModelConfig
from dtm.config.pretrain import PretrainConfig
from dtm.diffusion.sampler import DecodeStats, generate
from dtm.memory_plan import ModelShape
from dtm.models import DiffusionLM, build_tiny_model, load_model
from dtm.tasks.increment import IncrementTask
from dtm.training.pretrain import pretrain

TASK_OPTIONS = {"num_digits": 64, "num_values": 252, "p_increment": 0.05}
ARCHITECTURE = TinyModelConfig(hidden_size=128, num_layers=2, num_heads=4, intermediate_size=384)


@dataclass(frozen=True)
class Option:
    """One decoder: the plain sampler's settings, or a fast one."""

    name: str
    remasking: Remasking = "low_confidence"
    temperature: float = 0.0
    threshold: float | None = None
    cache: KVCache = "none"
    cache_refresh: int = 0


GREEDY = [
    Option("plain"),
    Option("prefix cache", cache="prefix"),
    Option("dual cache", cache="dual"),
    Option("threshold 0.9", threshold=0.9),
    Option("threshold 0.9 + dual", threshold=0.9, cache="dual"),
]
SAMPLED = [
    Option("random T=1", remasking="random", temperature=1.0),
    Option("random T=1, threshold 0.9 + dual", remasking="random", temperature=1.0, threshold=0.9, cache="dual"),
]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gen", type=int, nargs="+", default=[256, 512], help="generation lengths")
    parser.add_argument("--block", type=int, default=32)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=1, help="timed rounds per option (medians are compared)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--model-root", type=Path, default=Path("runs/bench"), help="where the trained models are kept")
    parser.add_argument(
        "--out", type=Path, default=Path("runs/bench/fast_decoding.json"), help="where the numbers go as JSON"
    )
    return parser.parse_args()


def trained_model(root: Path, gen: int) -> DiffusionLM:
    """The increment model for generation length ``gen``, trained into ``root/increment-<gen>`` on first use (a
    folder trained with other settings is refused)."""
    cfg = PretrainConfig(
        task="increment",
        task_options=TASK_OPTIONS | {"gen_length": gen},
        architecture=replace(ARCHITECTURE, max_length=gen + 128),  # room for the prompt
        steps=1500,
        batch_size=16,
        lr=1e-3,
        lr_min=1e-4,
        seed=0,
        output_dir=str(root / f"increment-{gen}"),
    )
    folder = Path(cfg.output_dir)
    if not (folder / "model" / "config.json").is_file():
        pretrain(cfg, overwrite=True, progress=False)
    elif replace(load_config(PretrainConfig, folder / "config.yaml"), output_dir=cfg.output_dir) != cfg:
        raise SystemExit(f"{folder} was trained with other settings than this benchmark's; remove it to retrain")
    return load_model(folder / "model").eval()


def random_model(like: DiffusionLM) -> DiffusionLM:
    """The same shape with seeded random weights."""
    torch.manual_seed(0)
    config = like.config
    return build_tiny_model(
        replace(ARCHITECTURE, vocab_size=config.vocab_size, max_length=config.max_position_embeddings)
    ).eval()


def decode(model: DiffusionLM, prompts: torch.Tensor, gen: int, block: int, option: Option, stats: DecodeStats):
    return generate(
        model,
        prompts,
        gen,
        block,
        gen // 2,
        mask_token_id=model.mask_token_id,
        temperature=option.temperature,
        remasking=option.remasking,
        generator=torch.Generator().manual_seed(0),
        threshold=option.threshold,
        cache=option.cache,
        cache_refresh=option.cache_refresh,
        stats=stats,
    )[:, prompts.shape[1] :]


def digits_right(task: IncrementTask, prompts: torch.Tensor, responses: torch.Tensor) -> float:
    """The fraction of response digits that copy or increment their prompt digit (what the task's data teaches)."""
    change = (responses[:, : task.num_digits] - prompts[:, : task.num_digits]) % task.num_values
    return ((change == 0) | (change == 1)).double().mean().item()


def measure(model, task, prompts, gen, block, options, repeats) -> dict[str, dict]:
    """Decode with every option (alternating, ``repeats`` timed rounds); per option the counts, FLOPs and median time,
    the fraction of digits right and the fraction of responses identical to the first option's."""
    stats = {o.name: DecodeStats.zeros(len(prompts)) for o in options}
    variants = {
        o.name: (lambda o=o: decode(model, prompts, gen, block, o, DecodeStats.zeros(len(prompts)))) for o in options
    }
    times, outputs = time_alternating(variants, repeats, warmup=0)
    for o in options:  # the counts of one decoding (they do not change between rounds)
        decode(model, prompts, gen, block, o, stats[o.name])
    ours, llada = ModelShape.from_hf_config(model.config), ModelShape.llada_8b()
    reference = outputs[options[0].name]
    rows = {}
    for o in options:
        s = stats[o.name]
        counts = (s.tokens.double(), s.attention_pairs.double(), s.head_positions.double())
        assert not (outputs[o.name] == model.mask_token_id).any(), f"{o.name}: mask tokens left in a response"
        rows[o.name] = {
            "passes_per_token": s.passes.double().mean().item() / gen,
            "positions_per_sequence": counts[0].mean().item(),
            "flops": ours.forward_flops(*counts).mean().item(),
            "llada_flops": llada.forward_flops(*counts).mean().item(),
            "seconds": median(times[o.name]),
            "same_response": (outputs[o.name] == reference).all(dim=1).double().mean().item(),
            "digits_right": digits_right(task, prompts, outputs[o.name]),
        }
    return rows


def table(rows: dict[str, dict], greedy: bool) -> str:
    """Markdown: one row per option, ratios against the first (the plain sampler)."""
    ref = next(iter(rows.values()))
    head = (
        "| option | passes / token | positions / sequence | FLOPs / sequence | LLaDA-8B FLOPs / sequence | wall s | "
        "fewer passes | fewer FLOPs | less wall time | digits right |" + (" same response |" if greedy else "")
    )
    lines = [head, "|---" * (11 if greedy else 10) + "|"]
    for name, r in rows.items():
        line = (
            f"| {name} | {r['passes_per_token']:.3f} | {r['positions_per_sequence']:.0f} | {r['flops']:.3g} | "
            f"{r['llada_flops']:.3g} | {r['seconds']:.2f} | {ref['passes_per_token'] / r['passes_per_token']:.2f}x | "
            f"{ref['flops'] / r['flops']:.2f}x | {ref['seconds'] / r['seconds']:.2f}x | {r['digits_right']:.0%} |"
        )
        lines.append(line + (f" {r['same_response']:.0%} |" if greedy else ""))
    return "\n".join(lines)


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    llada = ModelShape.llada_8b()
    print(
        f"Fast decoding: batch {args.batch}, block {args.block}, steps = gen length / 2 for the fixed schedule; "
        f"{args.threads} threads"
    )
    results: dict[str, dict] = {"settings": {k: str(v) for k, v in vars(args).items()}, "lengths": {}}
    for gen in args.gen:
        model = trained_model(args.model_root, gen)
        shape = ModelShape.from_hf_config(model.config)
        ratio = shape.linear_params() / (shape.hidden_size * shape.vocab_size)
        llada_ratio = llada.linear_params() / (llada.hidden_size * llada.vocab_size)
        task = IncrementTask(**TASK_OPTIONS, gen_length=gen)
        prompts = task.prompts(args.batch, split="test", seed=0)
        ids = prompts.ids
        greedy = measure(model, task, ids, gen, args.block, GREEDY, args.repeats)
        sampled = measure(model, task, ids, gen, args.block, SAMPLED, args.repeats)
        unsure = measure(random_model(model), task, ids, gen, args.block, [GREEDY[0], GREEDY[2], GREEDY[4]], 1)
        results["lengths"][str(gen)] = {
            "prompt_tokens": ids.shape[1],
            "backbone_head_ratio": ratio,
            "llada_backbone_head_ratio": llada_ratio,
            "trained model, greedy": greedy,
            "trained model, sampled": sampled,
            "random weights, greedy": unsure,
        }
        print(
            f"gen length {gen}, prompt {prompts.ids.shape[1]} tokens; model hidden {shape.hidden_size}, "
            f"{shape.num_layers} layers, vocab {shape.vocab_size}: backbone / head {ratio:.1f} (LLaDA-8B "
            f"{llada_ratio:.1f})"
        )
        for title, rows in (("trained model, greedy", greedy), ("trained model, sampled", sampled)):
            print(f"{title}\n{table(rows, greedy='greedy' in title)}")
        print(f"random weights, greedy\n{table(unsure, greedy=True)}")
        fast = greedy["threshold 0.9 + dual"]
        summary_line(
            f"fast decoding len {gen}: passes plain / threshold 0.9 + dual",
            greedy["plain"]["passes_per_token"] / fast["passes_per_token"],
            ">= 4x at 256",
        )
        summary_line(
            f"fast decoding len {gen}: wall plain / threshold 0.9 + dual",
            greedy["plain"]["seconds"] / fast["seconds"],
            ">= 3x at 256",
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"numbers: {args.out}")
    print(f"peak RSS of this process {peak_rss_mb():.0f} MiB")


if __name__ == "__main__":
    main()
