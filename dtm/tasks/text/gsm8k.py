"""GSM8K: grade-school word problems with a numeric answer.

Reward, in {0, 1}: 1.0 if the number extracted from the completion equals the reference as a number (``"1,000"``,
``"$1000"``, ``"1000.0"`` and ``"1000"`` are all equal), else 0.0 (also when no number is found). ``is_correct`` is
reward == 1.0; the metric is accuracy.

Answer extraction (:meth:`GSM8KTask.extract_answer`), returning a canonical number string or None:

1. the region searched is the first complete ``<answer>...</answer>`` if there is one, else the whole completion;
2. inside it, the last ``\\boxed{...}`` if any; else (no answer tag) the text after the last ``####``; else the region;
3. the last number written there (ASCII digits, optional sign, thousands commas, decimals; see
   :func:`dtm.tasks.text.extract.parse_number`).

Data. ``source="hub"``: ``openai/gsm8k`` config ``main`` (splits train/test); the reference answer is what follows
``####`` in the dataset's ``answer`` field, whose full text is kept as ``meta["solution"]``. Local files: JSONL/CSV
with ``question`` and ``answer`` (either GSM8K's rationale ending in ``#### <number>`` or the number alone), optional
``id``. ``source="generate"``: GSM8K-style problems with worked rationales from reasoning-gym's ``gsm_symbolic``
generator (templates of GSM8K problems with fresh names and numbers; the ``real`` extra, requirements-real.txt),
deterministic in ``seed``; a problem is ``test`` iff ``int(sha256("dtm-gsm8k:" + question)[:8], 16) % 100 < 20``, so
train and test never share a question.

Prompts. Reasoning style (the SPG evaluation prompt, in our words): solve step by step, answer format with
``\\boxed{}`` inside the answer tag, then the question. Chat style: the question and "put the final answer in
\\boxed{}". Demonstrations (for supervised fine-tuning): the example's rationale, then its answer in ``\\boxed{}``
(inside reasoning and answer tags in the reasoning style).
"""

from __future__ import annotations

import hashlib
import importlib.util
from collections.abc import Mapping
from typing import Any, ClassVar

from dtm.tasks.text.base import BoxedMathTask, TextExample, as_example, get_field
from dtm.tasks.text.extract import answer_tag, format_number, last_boxed, last_number, parse_number
from dtm.tasks.text.files import hub_records

HUB_PATH, HUB_CONFIG = "openai/gsm8k", "main"
GENERATOR = "gsm_symbolic"  # reasoning-gym's GSM8K-style generator
TEST_PERCENT = 20


def problem_split(question: str) -> str:
    """``"train"`` or ``"test"`` for a generated problem, by the hash rule of the module docstring."""
    digest = hashlib.sha256(f"dtm-gsm8k:{question}".encode()).hexdigest()
    return "test" if int(digest[:8], 16) % 100 < TEST_PERCENT else "train"


def reference_answer(answer_field: str) -> str | None:
    """The canonical number after ``####`` in a GSM8K answer (or the whole field if it is just a number)."""
    text = answer_field.rsplit("####", 1)[1] if "####" in answer_field else answer_field
    value = parse_number(text.strip())
    return format_number(value) if value is not None else None


def extract_number(text: str) -> str | None:
    """The final numeric answer of a completion, canonicalised (module docstring, "Answer extraction")."""
    if not isinstance(text, str):
        return None
    tag = answer_tag(text)
    region = text if tag is None else tag
    boxed = last_boxed(region)
    if boxed is not None:
        region = boxed
    elif tag is None and "####" in text:
        region = text.rsplit("####", 1)[1]
    number = last_number(region)
    value = parse_number(number) if number is not None else None
    return format_number(value) if value is not None else None


def numbers_equal(a: str | None, b: str | None) -> bool:
    """True iff both strings parse as numbers with the same exact value."""
    x = parse_number(a) if a is not None else None
    y = parse_number(b) if b is not None else None
    return x is not None and y is not None and x == y


class GSM8KTask(BoxedMathTask):
    """GSM8K (module docstring: data, prompts, answer extraction and reward)."""

    name: ClassVar[str] = "gsm8k"

    def from_record(self, record: Mapping[str, Any], where: str) -> TextExample:
        question = str(get_field(record, ("question",), where)).strip()
        answer_field = str(get_field(record, ("answer",), where))
        answer = reference_answer(answer_field)
        if not question:
            raise ValueError(f"{where}: empty question")
        if answer is None:
            raise ValueError(f"{where}: the answer must be a number or end with '#### <number>', got {answer_field!r}")
        return TextExample(str(record.get("id", where)), question, answer, {"solution": answer_field})

    def load_hub(self, split: str) -> list[TextExample]:
        return [self.from_record(record, where) for where, record in hub_records(HUB_PATH, split, HUB_CONFIG)]

    def generate(self, n: int, split: str, seed: int) -> list[TextExample]:
        """``n`` GSM8K-style problems of ``split`` from reasoning-gym (module docstring)."""
        if importlib.util.find_spec("reasoning_gym") is None:
            raise ImportError(
                "gsm8k with source=generate needs reasoning-gym: pip install --no-deps -r requirements-real.txt"
            )
        import reasoning_gym

        limit = 20 * (n + 10)  # a split keeps about 20% (test) or 80% (train) of the problems
        problems = reasoning_gym.create_dataset(GENERATOR, seed=seed, size=limit)
        out: list[TextExample] = []
        for index in range(limit):
            if len(out) == n:
                return out
            item = problems[index]
            if problem_split(item["question"]) == split:
                record = {"id": f"gsm8k-{split}-{seed}-{index}", "question": item["question"]}
                out.append(self.from_record(record | {"answer": item["metadata"]["answer_cot"]}, record["id"]))
        raise ValueError(f"could not generate {n} gsm8k {split} problems from {limit} candidates")

    def demonstration(self, example: TextExample | Mapping[str, Any], style: str | None = None) -> str:
        example = as_example(example)
        solution = str(example.meta.get("solution", ""))
        rationale = solution.rsplit("####", 1)[0].strip() if "####" in solution else ""
        boxed = f"\\boxed{{{example.answer}}}"
        if (style or self.style) == "chat":
            return f"{rationale}\nThe final answer is {boxed}." if rationale else f"The final answer is {boxed}."
        return f"<reasoning>\n{rationale}\n</reasoning>\n<answer>\n{boxed}\n</answer>"

    def extract_answer(self, text: str) -> str | None:
        return extract_number(text)

    def reward(self, completion: str, example: TextExample | Mapping[str, Any]) -> float:
        return 1.0 if numbers_equal(self.extract_answer(completion), as_example(example).answer) else 0.0
