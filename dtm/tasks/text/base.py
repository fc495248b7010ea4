"""What every text task shares: the example record, the two prompt styles, and example sources.

A text task turns examples into chat messages (``[{"role": ..., "content": ...}]``, to be rendered later by the
model's tokenizer chat template), extracts the final answer from a completion and scores it. Two prompt styles:

* ``"reasoning"``: the d1/SPG format used by the DTM paper (arXiv 2604.18739). One user turn holding the task
  instructions, which ask for ``<reasoning>...</reasoning>\\n<answer>...</answer>``, optional worked examples, then
  the question. d1/SPG start the response with :data:`REASONING_PREFIX` after the chat template's generation prompt; a
  caller that wants this appends it to the rendered prompt (the rewards only read the ``<answer>`` tag, so they work
  either way).
* ``"chat"``: a plain question with a one-line note on where to put the final answer (the tags for Countdown and Sudoku,
  whose rewards need them; ``\\boxed{}`` for GSM8K and MATH500), for the model's own chat template.

``instructions=`` replaces a task's reasoning-style instructions (e.g. with the exact text of another code base), and
``system_message=True`` puts them in a system turn instead of the user turn.

Example sources (``source=``): ``"hub"`` (the task's Hugging Face dataset through ``datasets.load_dataset``),
``"generate"`` (the offline generator, Countdown and Sudoku only) or the path of a local ``.jsonl`` / ``.csv`` file
(see :mod:`dtm.tasks.text.files`; a file holds one split, so ``split`` is ignored for files).

Rewards and ``extract_answer`` take any string and never raise; a reward is a float in the task's ``reward_range``.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from dtm.tasks.text.files import read_records

Message = dict[str, str]
STYLES = ("reasoning", "chat")
SPLITS = ("train", "test")
REASONING_FORMAT = "Respond in the following format:\n<reasoning>\n...\n</reasoning>\n<answer>\n...\n</answer>"
REASONING_PREFIX = "<reasoning>"
MATH_INSTRUCTIONS = (
    "You are an expert mathematician. Solve the question below step by step and write the final answer inside "
    "\\boxed{}.\nRespond in the following format:\n<reasoning>\nYour reasoning here\n</reasoning>\n<answer>\n"
    "\\boxed{...}\n</answer>"
)


@dataclass
class TextExample:
    """One problem: an id, the question text, the reference answer (as text) and task-specific metadata."""

    id: str
    question: str
    answer: str
    meta: dict[str, Any] = field(default_factory=dict)

    def to_meta(self) -> dict[str, Any]:
        """A flat dict (JSON-friendly) to carry through a trainer's per-prompt metadata."""
        return {"id": self.id, "question": self.question, "answer": self.answer, **self.meta}

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any]) -> TextExample:
        rest = {k: v for k, v in meta.items() if k not in ("id", "question", "answer")}
        return cls(str(meta.get("id", "")), str(meta.get("question", "")), str(meta.get("answer", "")), rest)


def as_example(example: TextExample | Mapping[str, Any]) -> TextExample:
    """Accept a :class:`TextExample` or its :meth:`TextExample.to_meta` dict."""
    return example if isinstance(example, TextExample) else TextExample.from_meta(example)


def get_field(record: Mapping[str, Any], names: Sequence[str], where: str) -> Any:
    """The value of the first of ``names`` present in ``record`` (keys compared case-insensitively)."""
    lowered = {str(k).strip().lower(): v for k, v in record.items()}
    for name in names:
        if name.lower() in lowered:
            return lowered[name.lower()]
    raise ValueError(f"{where}: missing field {names[0]!r} (fields present: {', '.join(map(str, record)) or 'none'})")


class TextTask:
    """Base class of the text tasks: prompt styles, example sources and batched scoring.

    Subclasses set ``name``, ``reward_range``, ``default_source`` and implement :meth:`from_record`,
    :meth:`reasoning_prompt`, :meth:`chat_prompt`, :meth:`extract_answer`, :meth:`reward` and :meth:`is_correct`; they
    may implement :meth:`load_hub` and :meth:`generate`.
    """

    name: ClassVar[str] = ""
    reward_range: ClassVar[tuple[float, float]] = (0.0, 1.0)
    default_source: ClassVar[str] = "hub"

    def __init__(
        self,
        style: str = "reasoning",
        source: str | Path | None = None,
        instructions: str | None = None,
        system_message: bool = False,
    ) -> None:
        if style not in STYLES:
            raise ValueError(f"style must be one of {list(STYLES)}, got {style!r}")
        self.style = style
        self.source = str(source) if source is not None else self.default_source
        self.instructions = instructions
        self.system_message = system_message

    # ------------------------------------------------------------------------------------------------ examples

    def examples(self, split: str = "train", n: int | None = None, seed: int = 0) -> list[TextExample]:
        """Examples of ``split`` from ``self.source``; ``n`` (if given) deterministic in ``seed``.

        Generated sources make exactly ``n`` examples; loaded ones keep a seeded random subset of ``n`` of them.
        """
        if split not in SPLITS:
            raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")
        if n is not None and n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        if self.source == "generate":
            if n is None:
                raise ValueError(f"{self.name}: give the number of examples n to generate")
            return self.generate(n, split, seed)
        items = self.load_hub(split) if self.source == "hub" else self.load_file(self.source)
        if n is not None and n < len(items):
            picked = random.Random(f"{self.name}:{split}:{seed}").sample(range(len(items)), n)
            items = [items[i] for i in picked]
        return items

    def load_file(self, path: str | Path) -> list[TextExample]:
        """Examples from a local JSONL or CSV file; a bad record raises ValueError naming its file and line."""
        return [self.from_record(record, where) for where, record in read_records(path)]

    def load_hub(self, split: str) -> list[TextExample]:
        raise ValueError(f"{self.name} has no Hugging Face dataset; use source='generate' or a local file")

    def generate(self, n: int, split: str, seed: int) -> list[TextExample]:
        raise ValueError(f"{self.name} has no offline generator; use source='hub' or a local file")

    def from_record(self, record: Mapping[str, Any], where: str) -> TextExample:
        raise NotImplementedError

    # -------------------------------------------------------------------------------------------------- prompts

    def prompt(self, example: TextExample | Mapping[str, Any], style: str | None = None) -> list[Message]:
        """Chat messages for ``example`` in ``style`` (default: the task's style)."""
        style = style or self.style
        if style not in STYLES:
            raise ValueError(f"style must be one of {list(STYLES)}, got {style!r}")
        example = as_example(example)
        if style == "chat":
            return [{"role": "user", "content": self.chat_prompt(example)}]
        instructions = self.instructions if self.instructions is not None else self.default_instructions()
        body = self.reasoning_prompt(example)
        if self.system_message:
            return [{"role": "system", "content": instructions}, {"role": "user", "content": body}]
        return [{"role": "user", "content": f"{instructions}\n\n{body}"}]

    def default_instructions(self) -> str:
        """The reasoning-style instructions (format and task rules) placed before the question."""
        return REASONING_FORMAT

    def reasoning_prompt(self, example: TextExample) -> str:
        raise NotImplementedError

    def chat_prompt(self, example: TextExample) -> str:
        raise NotImplementedError

    def demonstration(self, example: TextExample | Mapping[str, Any], style: str | None = None) -> str:
        """A correct response to ``example`` in ``style`` (default: the task's style), for supervised fine-tuning:
        the reasoning style's tags, or the answer where the chat style's prompt asks for it."""
        raise ValueError(f"{self.name} has no demonstrations; fine-tune on another task's")

    # ---------------------------------------------------------------------------------------------------- scores

    def extract_answer(self, text: str) -> str | None:
        raise NotImplementedError

    def reward(self, completion: str, example: TextExample | Mapping[str, Any]) -> float:
        raise NotImplementedError

    def is_correct(self, completion: str, example: TextExample | Mapping[str, Any]) -> bool:
        raise NotImplementedError

    def score(self, completion: str, example: TextExample | Mapping[str, Any]) -> float:
        """The evaluation metric of one completion, in [0, 1] (accuracy; Sudoku overrides it with cell accuracy)."""
        return float(self.is_correct(completion, example))

    def rewards(self, completions: Sequence[str], examples: Sequence[TextExample | Mapping[str, Any]]) -> list[float]:
        """One reward per (completion, example) pair."""
        if len(completions) != len(examples):
            raise ValueError(f"{len(completions)} completions for {len(examples)} examples")
        return [self.reward(c, e) for c, e in zip(completions, examples, strict=True)]


class BoxedMathTask(TextTask):
    """A math task with one reference answer written in ``\\boxed{}`` (GSM8K, MATH500): the math instructions, the
    question as the reasoning-style prompt, the question and a request for ``\\boxed{}`` in the chat style, the hub
    as default source, and a reward in {0, 1} that is correct iff it is 1. A subclass says how an answer is extracted
    and when two answers are equal (``extract_answer``, ``reward``)."""

    reward_range: ClassVar[tuple[float, float]] = (0.0, 1.0)
    default_source: ClassVar[str] = "hub"

    def default_instructions(self) -> str:
        return MATH_INSTRUCTIONS

    def reasoning_prompt(self, example: TextExample) -> str:
        return example.question

    def chat_prompt(self, example: TextExample) -> str:
        return f"{example.question}\nPut your final answer within \\boxed{{}}."

    def is_correct(self, completion: str, example: TextExample | Mapping[str, Any]) -> bool:
        return self.reward(completion, example) == 1.0
