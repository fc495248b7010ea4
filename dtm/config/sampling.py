"""Settings of SAR decoding (the ``sampling`` section of training configs), and the rules every decoding's settings
meet, owned here once: :class:`SamplingConfig` reports a broken rule as a ConfigError, the sampler
(:func:`dtm.diffusion.sampler.generate`) and the exact laws as a ValueError, with the same text."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from dtm.config.choices import KVCache, Remasking
from dtm.config.fields import setting
from dtm.config.loader import check

# Exact laws enumerate 2^B decoding states per block of B tokens (3^B transitions with a confidence threshold).
MAX_EXACT_BLOCK = 12
MAX_THRESHOLD_BLOCK = 8

THRESHOLD_HELP = (
    "confidence-threshold parallel decoding: each round commits every masked position of the block whose "
    "confidence exceeds it (random order: the run of confident positions along a random order), at least one; "
    "rounds then adapt and decode_steps is unused (null: the fixed schedule of decode_steps; 1.0: one token per round)"
)
CACHE_HELP = (
    "keys/values reused within a block: none, prefix (positions before the block) or dual (before and after it); "
    "refreshed at block starts and every cache_refresh rounds; needs a transformers model with a key/value cache"
)
CACHE_REFRESH_HELP = (
    "rounds between cache refreshes inside a block (0: only at the block's first round; 1: every round, exact)"
)


@dataclass
class SamplingConfig:
    """SAR decoding: the response is decoded block by block, left to right; inside a block, each round unmasks some
    positions (the most confident ones, or random ones) until the block is filled."""

    renamed_keys: ClassVar[dict[str, str]] = {
        "steps": "decode_steps",
        "batch_size": "decode_batch",
        "prefix_cache": "cache",
    }

    gen_length: int = setting(8, "response length in tokens")
    block_length: int = setting(4, "SAR block length; must divide gen_length (gen_length = one block: no SAR)")
    decode_steps: int = setting(8, "decoding rounds over the whole response, shared equally by the blocks")
    temperature: float = setting(1.0, "sampling temperature of each unmasked token (0 = greedy)")
    remasking: Remasking = setting(
        "low_confidence",
        "which masked positions a round fills: the most confident ones, or random ones (random samples the model's "
        "own sequence law)",
    )
    decode_batch: int = setting(
        256,
        "prompts decoded together (memory and speed; at temperature > 0 the random draws, not their law, depend on it)",
    )
    threshold: float | None = setting(None, THRESHOLD_HELP)
    cache: KVCache = setting("none", CACHE_HELP)
    cache_refresh: int = setting(0, CACHE_REFRESH_HELP)

    def __post_init__(self) -> None:
        problem = decoding_problem(
            self.gen_length,
            self.block_length,
            self.decode_steps,
            temperature=self.temperature,
            remasking=self.remasking,
            threshold=self.threshold,
            cache=self.cache,
            cache_refresh=self.cache_refresh,
            steps_key="decode_steps",
        )
        if problem:
            check(False, *problem)
        check(self.decode_batch > 0, "decode_batch", f"must be positive, got {self.decode_batch}")

    def block_rounds(self) -> int:
        """The most rounds a block can take: its share of decode_steps, or block_length with a threshold."""
        return max_block_rounds(self.gen_length, self.block_length, self.decode_steps, self.threshold)


def max_block_rounds(gen_length: int, block_length: int, steps: int, threshold: float | None) -> int:
    """The most rounds a block can take: its share of ``steps`` (earlier blocks take the remainder; never more
    rounds than tokens), or ``block_length`` with a threshold (one token per round at least)."""
    if threshold is not None:
        return block_length
    base, extra = divmod(steps, gen_length // block_length)
    return min(base + (extra > 0), block_length)


def block_problem(gen_length: int, block_length: int) -> tuple[str, str] | None:
    """The block rule as ``(key, message)`` when broken: a positive response length, cut into whole blocks."""
    if gen_length <= 0:
        return "gen_length", f"must be positive, got {gen_length}"
    if block_length <= 0 or gen_length % block_length:
        return "block_length", f"must divide gen_length {gen_length}, got {block_length}"
    return None


def decoding_problem(
    gen_length: int,
    block_length: int,
    steps: int,
    *,
    temperature: float = 0.0,
    remasking: str = "low_confidence",
    threshold: float | None = None,
    cache: str = "none",
    cache_refresh: int = 0,
    steps_key: str = "steps",
) -> tuple[str, str] | None:
    """The first broken rule of a decoding's settings as ``(key, message)``, or None: whole blocks, at least one
    round per block, a known remasking and cache, a temperature >= 0, a threshold in (0, 1], and a cache refresh
    period that needs a cache and fits a block. ``steps_key`` names the rounds in the message (``decode_steps`` in a
    config, ``steps`` in the sampler's arguments)."""
    problem = block_problem(gen_length, block_length)
    if problem:
        return problem
    blocks = gen_length // block_length
    rules = [
        (steps >= blocks, steps_key, f"must be >= the number of blocks {blocks}, got {steps}"),
        (
            remasking in ("low_confidence", "random"),
            "remasking",
            f"must be 'low_confidence' or 'random', got {remasking!r}",
        ),
        (temperature >= 0, "temperature", f"must be >= 0, got {temperature}"),
        (threshold is None or 0 < threshold <= 1, "threshold", f"must be in (0, 1], got {threshold}"),
        (cache in ("none", "prefix", "dual"), "cache", f"must be 'none', 'prefix' or 'dual', got {cache!r}"),
        (cache_refresh >= 0, "cache_refresh", f"must be >= 0, got {cache_refresh}"),
        (
            cache != "none" or cache_refresh == 0,
            "cache_refresh",
            f"{cache_refresh} needs a cache ('prefix' or 'dual'); cache is 'none'",
        ),
    ]
    for ok, key, message in rules:
        if not ok:
            return key, message
    rounds = max_block_rounds(gen_length, block_length, steps, threshold)
    if cache_refresh > rounds:
        return "cache_refresh", (
            f"{cache_refresh} does not fit the block: a block takes at most {rounds} rounds, so the cache would only "
            "be refreshed at block starts (use 0 for that)"
        )
    return None


def check_exact_sampler(sampling: SamplingConfig, gen_length: int) -> None:
    """The exact-law identities of the fit diagnostic need the decoding the trainer's SAR states describe: random
    order, one token per round, at temperature 1."""
    problems = []
    if sampling.remasking != "random":
        problems.append(f"sampling.remasking must be 'random', got {sampling.remasking!r}")
    if sampling.decode_steps != gen_length:
        problems.append(f"sampling.decode_steps must equal gen_length={gen_length} got {sampling.decode_steps}")
    if not math.isclose(sampling.temperature, 1.0):
        problems.append(f"sampling.temperature must be 1, got {sampling.temperature}")
    if problems:
        raise ValueError("; ".join(problems) + " (the decoding whose law DTM's SAR masked states describe)")
