"""Settings of SAR decoding (the ``sampling`` section of training configs)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from dtm.config.choices import Remasking
from dtm.config.fields import setting
from dtm.config.loader import check


@dataclass
class SamplingConfig:
    """SAR decoding: the response is decoded block by block, left to right; inside a block, each round unmasks some
    positions (the most confident ones, or random ones) until the block is filled."""

    renamed_keys: ClassVar[dict[str, str]] = {"steps": "decode_steps", "batch_size": "decode_batch"}

    gen_length: int = setting(8, "response length in tokens")
    block_length: int = setting(4, "SAR block length; must divide gen_length (gen_length = one block: no SAR)")
    decode_steps: int = setting(8, "decoding rounds over the whole response, shared equally by the blocks")
    temperature: float = setting(1.0, "sampling temperature of each unmasked token (0 = greedy)")
    remasking: Remasking = setting(
        "low_confidence",
        "which masked positions a round fills: the most confident ones, or random ones (random samples the model's "
        "own sequence law)",
    )
    decode_batch: int = setting(256, "prompts decoded together (memory only; the samples do not depend on it)")
    prefix_cache: bool = setting(
        False,
        "approximate prefix caching of keys and values: faster rollouts, outputs not identical to the uncached "
        "sampler; needs a model that accepts past_key_values",
    )

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
