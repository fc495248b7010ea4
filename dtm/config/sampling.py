"""Settings of SAR decoding (the ``sampling`` section of training configs)."""

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
        check(self.gen_length > 0, "gen_length", f"must be positive, got {self.gen_length}")
        check(
            self.block_length > 0 and self.gen_length % self.block_length == 0,
            "block_length",
            f"must divide gen_length {self.gen_length}, got {self.block_length}",
        )
        blocks = self.gen_length // max(self.block_length, 1)
        check(
            self.decode_steps >= blocks,
            "decode_steps",
            f"must be >= the number of blocks {blocks}, got {self.decode_steps}",
        )
        check(self.temperature >= 0, "temperature", f"must be >= 0, got {self.temperature}")
        check(self.decode_batch > 0, "decode_batch", f"must be positive, got {self.decode_batch}")
        check_fast_decoding(self.threshold, self.cache_refresh, self.cache, self.block_rounds())

    def block_rounds(self) -> int:
        """The most rounds a block can take: its share of decode_steps, or block_length with a threshold."""
        if self.threshold is not None:
            return self.block_length
        base, extra = divmod(self.decode_steps, self.gen_length // self.block_length)
        return min(base + (extra > 0), self.block_length)


def check_fast_decoding(threshold: float | None, cache_refresh: int, cache: str, block_rounds: int) -> None:
    """The checks of the parallel-decoding and cache keys, shared by every config that decodes."""
    check(threshold is None or 0 < threshold <= 1, "threshold", f"must be in (0, 1], got {threshold}")
    check(cache_refresh >= 0, "cache_refresh", f"must be >= 0, got {cache_refresh}")
    check(
        cache != "none" or cache_refresh == 0,
        "cache_refresh",
        f"{cache_refresh} needs a cache ('prefix' or 'dual'); cache is 'none'",
    )
    check(
        cache_refresh <= block_rounds,
        "cache_refresh",
        f"{cache_refresh} does not fit the block: a block takes at most {block_rounds} rounds, so the cache would "
        "only be refreshed at block starts (use 0 for that)",
    )


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
