"""Settings of ``dtm eval``: greedy decoding of a task's test prompts at one or more generation lengths."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from dtm.config.choices import TASK_NAMES, KVCache, PromptTruncation, Remasking, Split
from dtm.config.fields import setting
from dtm.config.loader import check
from dtm.config.model import LoadOptions
from dtm.config.run import check_task
from dtm.config.sampling import CACHE_HELP, CACHE_REFRESH_HELP, THRESHOLD_HELP, SamplingConfig


@dataclass
class EvalConfig:
    """What to evaluate and how. ``decode_steps`` = 0 means gen_length / 2 (the DTM paper's setting, arXiv
    2604.18739)."""

    renamed_keys: ClassVar[dict[str, str]] = {
        "steps": "decode_steps",
        "batch_size": "decode_batch",
        "prefix_cache": "cache",
    }

    model: str = setting("", "model folder to evaluate (built-in, LLaDA, Dream, ...)")
    task: str = setting("sudoku_digits", "task whose test prompts are decoded: " + ", ".join(TASK_NAMES))
    adapter: str | None = setting(None, "LoRA adapter folder applied to the model (e.g. RUN/final/adapter)")
    load: LoadOptions = setting(factory=LoadOptions, help="how the model folder is loaded")
    task_options: dict[str, Any] = setting(
        factory=dict, help="the task's own options (text tasks: style reasoning|chat, source hub|generate|FILE)"
    )
    gen_lengths: list[int] = setting(factory=lambda: [256], help="generation lengths, one accuracy row each")
    block_length: int = setting(32, "SAR block length; must divide every generation length")
    decode_steps: int = setting(0, "decoding rounds per response (0: gen_length / 2)")
    temperature: float = setting(0.0, "sampling temperature (0 = greedy)")
    remasking: Remasking = setting("low_confidence", "which masked positions a round fills")
    threshold: float | None = setting(None, THRESHOLD_HELP)
    cache: KVCache = setting("none", CACHE_HELP)
    cache_refresh: int = setting(0, CACHE_REFRESH_HELP)
    num_examples: int = setting(256, "test examples decoded")
    split: Split = setting("test", "split the examples come from")
    seed: int = setting(0, "seed of the example draw and of sampling (temperature > 0)")
    decode_batch: int = setting(16, "prompts decoded together (memory only)")
    max_prompt_length: int = setting(0, "text tasks: longest prompt in tokens (0 = no limit)")
    prompt_truncation: PromptTruncation = setting(
        "error", "text tasks: what a longer prompt does: stop with an error, or keep its last tokens"
    )
    output_dir: str = setting(
        "runs/eval",
        "where samples, results.json and results.md go (an earlier run's samples with the same model, data and "
        "settings are reused)",
    )

    def __post_init__(self) -> None:
        check(bool(self.model), "model", "give the model folder to evaluate")
        check_task(self.task)
        check(bool(self.gen_lengths), "gen_lengths", "give at least one generation length")
        check(self.block_length > 0, "block_length", f"must be positive, got {self.block_length}")
        check(self.decode_steps >= 0, "decode_steps", f"must be >= 0 (0: gen_length / 2), got {self.decode_steps}")
        for length in self.gen_lengths:
            self.sampling(length)  # validates block_length and decode_steps against every length
        check(self.num_examples > 0, "num_examples", f"must be positive, got {self.num_examples}")

    def decode_steps_for(self, gen_length: int) -> int:
        return self.decode_steps or max(gen_length // 2, gen_length // self.block_length)

    def sampling(self, gen_length: int) -> SamplingConfig:
        return SamplingConfig(
            gen_length=gen_length,
            block_length=self.block_length,
            decode_steps=self.decode_steps_for(gen_length),
            temperature=self.temperature,
            remasking=self.remasking,
            decode_batch=self.decode_batch,
            threshold=self.threshold,
            cache=self.cache,
            cache_refresh=self.cache_refresh,
        )
