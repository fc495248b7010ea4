"""MATH500: competition mathematics with LaTeX answers (the 500-problem test subset of MATH).

Reward, in {0, 1}: 1.0 if the extracted answer is equivalent to the reference by
:func:`dtm.tasks.text.math_equiv.equivalent` (normalised string match, else ``math-verify`` under a time limit),
else 0.0 (also when no answer is found). ``is_correct`` is reward == 1.0; the metric is accuracy.

Answer extraction (:meth:`Math500Task.extract_answer`): inside the first complete ``<answer>...</answer>``, its last
``\\boxed{...}`` if any, else the whole tag content; without an answer tag, the last ``\\boxed{...}`` of the
completion; else None.

Data. ``source="hub"``: ``HuggingFaceH4/MATH-500`` (split ``test`` only; ``problem``, ``answer``, plus ``solution``,
``subject``, ``level``, ``unique_id`` kept in ``meta``). MATH500 is an evaluation set: asking its hub source for
``train`` raises; train from a local file. Local files: JSONL/CSV with ``problem`` (or ``question``) and ``answer``,
optional ``id`` / ``unique_id`` and the other fields above.

Prompts. Reasoning style (the d1/SPG MATH prompt, in our words): answer format with ``\\boxed{}`` inside the answer
tag, "solve step by step", then the problem. Chat style: the problem and "put the final answer in \\boxed{}".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from dtm.tasks.text.base import BoxedMathTask, TextExample, as_example, get_field
from dtm.tasks.text.extract import answer_tag, last_boxed
from dtm.tasks.text.files import hub_records
from dtm.tasks.text.math_equiv import equivalent

HUB_PATH = "HuggingFaceH4/MATH-500"
_META_FIELDS = ("solution", "subject", "level", "unique_id")


def extract_math_answer(text: str) -> str | None:
    """The final answer of a completion (module docstring, "Answer extraction")."""
    if not isinstance(text, str):
        return None
    tag = answer_tag(text)
    if tag is None:
        return last_boxed(text)
    boxed = last_boxed(tag)
    return boxed if boxed is not None else tag


class Math500Task(BoxedMathTask):
    """MATH500 (module docstring: data, prompts, answer extraction and reward)."""

    name: ClassVar[str] = "math500"

    def __init__(
        self,
        style: str = "reasoning",
        source: str | None = None,
        instructions: str | None = None,
        system_message: bool = False,
        timeout: float = 2.0,
    ) -> None:
        super().__init__(style, source, instructions, system_message)
        if not timeout > 0:
            raise ValueError(f"timeout must be a positive number of seconds per math-verify call, got {timeout}")
        self.timeout = timeout

    def from_record(self, record: Mapping[str, Any], where: str) -> TextExample:
        problem = str(get_field(record, ("problem", "question"), where)).strip()
        answer = str(get_field(record, ("answer",), where)).strip()
        if not problem or not answer:
            raise ValueError(f"{where}: 'problem' and 'answer' must not be empty")
        meta = {k: record[k] for k in _META_FIELDS if k in record}
        rid = record.get("id", record.get("unique_id", where))
        return TextExample(str(rid), problem, answer, meta)

    def load_hub(self, split: str) -> list[TextExample]:
        if split != "test":
            raise ValueError(f"{HUB_PATH} has only a 'test' split (an evaluation set); train from a local file")
        return [self.from_record(record, where) for where, record in hub_records(HUB_PATH, split)]

    def extract_answer(self, text: str) -> str | None:
        return extract_math_answer(text)

    def reward(self, completion: str, example: TextExample | Mapping[str, Any]) -> float:
        answer = self.extract_answer(completion)
        return 1.0 if equivalent(answer, as_example(example).answer, self.timeout) else 0.0
