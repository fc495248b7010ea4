"""Helpers shared by the benchmarks: a scaled built-in model, alternating timing, medians and peak memory.

Timing on a shared machine is noisy, so every benchmark alternates its variants (ours, reference, ours, ...) and
reports the median of each: a burst of load from another process then hits both variants alike.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from dtm.models import DiffusionLM, TinyModelConfig, build_tiny_model


def scaled_model(cfg: TinyModelConfig, init_std: float | None = None, seed: int = 0) -> DiffusionLM:
    """The built-in model with seeded random weights.

    ``init_std`` redraws every weight matrix from N(0, init_std^2): the default init (std 0.02) gives nearly
    input-independent logits, so greedy decoding would emit one token everywhere and an agreement check between two
    samplers would mean little. A larger std makes the output depend on the context, like a trained model's.
    """
    torch.manual_seed(seed)
    model = build_tiny_model(cfg)
    if init_std is not None:
        with torch.no_grad():
            for param in model.parameters():
                if param.dim() == 2:
                    param.normal_(0.0, init_std)
    return model


def decoding_parser(doc: str | None, prompt: int) -> argparse.ArgumentParser:
    """Command-line options shared by the decoding benchmarks (batch and model shape, repeats, threads)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--prompt", type=int, default=prompt)
    parser.add_argument("--gen", type=int, default=256)
    parser.add_argument("--block", type=int, default=32)
    parser.add_argument("--steps", type=int, default=128)
    parser.add_argument("--vocab", type=int, default=1024)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--init-std", type=float, default=0.2, help="weight std: context-dependent outputs")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    return parser


def decoding_model(args: argparse.Namespace, mask_id: int) -> DiffusionLM:
    """The built-in model shaped by :func:`decoding_parser`'s options, in eval mode."""
    cfg = TinyModelConfig(
        vocab_size=args.vocab,
        mask_token_id=mask_id,
        hidden_size=args.hidden,
        num_layers=args.layers,
        num_heads=4,
        intermediate_size=args.hidden * 8 // 3,
        max_length=args.prompt + args.gen,
    )
    return scaled_model(cfg, init_std=args.init_std).eval()


def time_alternating(
    variants: dict[str, Callable[[], Any]], repeats: int, warmup: int = 1
) -> tuple[dict[str, list[float]], dict[str, Any]]:
    """Run the variants in turn ``warmup + repeats`` times; return their timed seconds and last results.

    Warm-up rounds (first calls allocate memory and pick kernels) are run but not timed.
    """
    times: dict[str, list[float]] = {name: [] for name in variants}
    results: dict[str, Any] = {}
    for round_ in range(warmup + repeats):
        for name, fn in variants.items():
            start = time.perf_counter()
            results[name] = fn()
            elapsed = time.perf_counter() - start
            if round_ >= warmup:
                times[name].append(elapsed)
    return times, results


def median(values: list[float]) -> float:
    return statistics.median(values)


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def report_times(times: dict[str, list[float]], unit: str = "s") -> None:
    """Print each variant's median and range."""
    scale = {"s": 1.0, "ms": 1e3}[unit]
    for name, values in times.items():
        print(
            f"  {name:12s} median {median(values) * scale:9.3f} {unit}"
            f"  (min {min(values) * scale:.3f}, max {max(values) * scale:.3f}, n={len(values)})"
        )


def summary_line(name: str, ratio: float, target: str) -> None:
    """The line ``run_all.py`` collects into its table: ``RESULT <name> | <ratio> | <target>``."""
    print(f"RESULT {name} | {ratio:.2f}x | {target}")
