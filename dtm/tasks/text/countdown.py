"""Countdown with three numbers: combine the given numbers with + - * / to reach a target.

Reward (the DTM paper's, arXiv 2604.18739), in {0, 0.1, 1}:

* 1.0 if the first complete ``<answer>...</answer>`` holds an expression that uses each given number exactly once (as
  a multiset; no other numbers) and evaluates exactly to the target;
* 0.1 if an answer tag is present but its content is wrong: another value, numbers missing, repeated or extra, an
  equals sign, ``**``, or anything :func:`dtm.tasks.text.arithmetic.evaluate` rejects (too long, too large, division
  by zero);
* 0.0 without a complete answer tag.

The answer is read as a person reads it: decimal digits in other scripts (full-width, Arabic-Indic...) are the digits
they are (:func:`dtm.tasks.text.extract.ascii_decimal_digits`), superscript digits are not digits (``3²`` is a
power); unary signs are signs (``-(-(E))`` is ``E``, ``2-(-3)`` is 5); one closing period is a sentence's end and is
dropped (other punctuation is not an expression); leading zeros do not change a number (``07`` uses 7).

Expressions are evaluated by our own safe evaluator (:mod:`dtm.tasks.text.arithmetic`), never by ``eval``.
``is_correct`` is reward == 1.0. The metric (``score``) is accuracy.

Data. ``source="hub"``: ``Jiayi-Pan/Countdown-Tasks-3to4`` (fields ``nums``, ``target``), keeping the items with three
numbers; the hub has a single split, so ours are cut from it by the hash rule below. ``source="generate"``:
:func:`generate_countdown`. Local files: JSONL/CSV with ``nums`` (or ``numbers``; a JSON list, in CSV also
``"3 5 7"``) and ``target``, optional ``id``.

Generator (deterministic in ``(split, seed)``): three numbers uniform in ``[min_number, max_number]`` (default 1-99);
a random expression over them (random order, operations and bracketing, each number used once) is evaluated exactly
and kept if its value is an integer in ``[min_target, max_target]`` (default 1-100), which becomes the target; so
every item is solvable (``meta["solution"]`` holds a witness; :func:`solve_countdown` checks by brute force).

Split rule (hub items and generated items alike): an item is ``test`` iff ``int(sha256("dtm-countdown:" + sorted
numbers + target)[:8], 16) % 100 < 20``; train and test never share a (numbers, target) problem.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import random
from collections.abc import Mapping, Sequence
from fractions import Fraction
from typing import Any, ClassVar

from dtm.tasks.text.arithmetic import evaluate_expression
from dtm.tasks.text.base import REASONING_FORMAT, TextExample, TextTask, as_example, get_field
from dtm.tasks.text.extract import answer_tag, ascii_decimal_digits
from dtm.tasks.text.files import hub_records

HUB_PATH = "Jiayi-Pan/Countdown-Tasks-3to4"
TEST_PERCENT = 20
CORRECT, WRONG, NO_ANSWER = 1.0, 0.1, 0.0
_SYMBOLS = ("+", "-", "*", "/")


def problem_split(numbers: Sequence[int], target: int) -> str:
    """``"train"`` or ``"test"`` for a problem, by the hash rule of the module docstring."""
    key = f"dtm-countdown:{sorted(int(x) for x in numbers)}:{int(target)}"
    return "test" if int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % 100 < TEST_PERCENT else "train"


def solve_countdown(numbers: Sequence[int], target: int) -> str | None:
    """An expression using each number once that equals ``target`` (brute force over all bracketings), or None.

    Independent of the generator (tests use it to confirm that generated problems are solvable).
    """

    def search(items: list[tuple[Fraction, str]]) -> str | None:
        if len(items) == 1:
            return items[0][1] if items[0][0] == target else None
        for i, j in itertools.permutations(range(len(items)), 2):
            (a, ta), (b, tb) = items[i], items[j]
            rest = [items[k] for k in range(len(items)) if k not in (i, j)]
            results = [(a + b, "+"), (a - b, "-"), (a * b, "*")] + ([(a / b, "/")] if b else [])
            for value, symbol in results:
                found = search([*rest, (value, f"({ta}{symbol}{tb})")])
                if found is not None:
                    return found
        return None

    found = search([(Fraction(x), str(x)) for x in numbers])
    return found[1:-1] if found is not None and len(numbers) > 1 else found  # drop the outermost brackets


def _random_expression(numbers: list[int], rng: random.Random) -> str:
    """A random fully bracketed expression using each of ``numbers`` once (random order, operations, shape)."""
    parts = [str(x) for x in numbers]
    rng.shuffle(parts)
    while len(parts) > 1:
        i = rng.randrange(len(parts) - 1)
        parts[i : i + 2] = [f"({parts[i]}{rng.choice(_SYMBOLS)}{parts[i + 1]})"]
    return parts[0][1:-1] if parts[0].startswith("(") else parts[0]


def generate_countdown(
    n: int,
    split: str = "train",
    seed: int = 0,
    count: int = 3,
    min_number: int = 1,
    max_number: int = 99,
    min_target: int = 1,
    max_target: int = 100,
) -> list[dict[str, Any]]:
    """``n`` solvable problems ``{"numbers", "target", "solution"}`` of ``split`` (module docstring)."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if n < 0 or count < 1 or not 0 <= min_number <= max_number or min_target > max_target:
        raise ValueError("need n >= 0, count >= 1, 0 <= min_number <= max_number and min_target <= max_target")
    rng = random.Random(f"dtm-countdown:{split}:{seed}")
    out: list[dict[str, Any]] = []
    tries = 0
    while len(out) < n:
        tries += 1
        if tries > 1000 * (n + 10):
            raise ValueError("could not generate enough Countdown problems with these ranges")
        numbers = [rng.randint(min_number, max_number) for _ in range(count)]
        expression = _random_expression(numbers, rng)
        result = evaluate_expression(expression)
        if result is None or result.value.denominator != 1:
            continue
        target = result.value.numerator
        if min_target <= target <= max_target and problem_split(numbers, target) == split:
            out.append({"numbers": numbers, "target": target, "solution": expression})
    return out


def _int_list(value: Any, where: str) -> list[int]:
    if isinstance(value, str):
        text = value.strip()
        try:
            value = json.loads(text) if text.startswith("[") else [int(x) for x in text.replace(",", " ").split()]
        except ValueError:
            raise ValueError(f"{where}: 'nums' must be a list of integers, got {text!r}") from None
    if not isinstance(value, list | tuple) or not value:
        raise ValueError(f"{where}: 'nums' must be a non-empty list of integers")
    if not all(isinstance(x, int) and not isinstance(x, bool) for x in value):
        raise ValueError(f"{where}: 'nums' must be a list of integers, got {value!r}")
    return [int(x) for x in value]


def _int(value: Any, where: str, name: str) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{where}: {name!r} must be an integer, got {value!r}")
    try:
        number = int(str(value).strip()) if isinstance(value, str) else value
    except ValueError:
        raise ValueError(f"{where}: {name!r} must be an integer, got {value!r}") from None
    if not isinstance(number, int):
        raise ValueError(f"{where}: {name!r} must be an integer, got {value!r}")
    return number


class CountdownTask(TextTask):
    """Countdown over three numbers (module docstring: data, generator, split rule and reward)."""

    name: ClassVar[str] = "countdown"
    reward_range: ClassVar[tuple[float, float]] = (0.0, 1.0)
    default_source: ClassVar[str] = "hub"

    def __init__(
        self,
        style: str = "reasoning",
        source: str | None = None,
        instructions: str | None = None,
        system_message: bool = False,
        count: int = 3,
        min_number: int = 1,
        max_number: int = 99,
        min_target: int = 1,
        max_target: int = 100,
    ) -> None:
        super().__init__(style, source, instructions, system_message)
        self.count = count
        self.ranges = {"min_number": min_number, "max_number": max_number}
        self.ranges |= {"min_target": min_target, "max_target": max_target}

    # -------------------------------------------------------------------------------------------------- data

    @staticmethod
    def make_example(numbers: Sequence[int], target: int, id: str, **meta: Any) -> TextExample:
        question = f"Using the numbers {list(numbers)}, make {target}."
        return TextExample(id, question, str(target), {"numbers": list(numbers), "target": int(target), **meta})

    def from_record(self, record: Mapping[str, Any], where: str) -> TextExample:
        numbers = _int_list(get_field(record, ("nums", "numbers"), where), where)
        target = _int(get_field(record, ("target",), where), where, "target")
        rid = str(record.get("id", where))
        return self.make_example(numbers, target, rid)

    def load_hub(self, split: str) -> list[TextExample]:
        out = []
        for where, record in hub_records(HUB_PATH, "train"):
            example = self.from_record(record, where)
            numbers = example.meta["numbers"]
            if len(numbers) == self.count and problem_split(numbers, example.meta["target"]) == split:
                out.append(example)
        if not out:
            raise ValueError(f"{HUB_PATH}: no {self.count}-number problems in split {split!r}")
        return out

    def generate(self, n: int, split: str, seed: int) -> list[TextExample]:
        items = generate_countdown(n, split, seed, self.count, **self.ranges)
        ids = [f"countdown-{split}-{seed}-{i}" for i in range(len(items))]
        return [
            self.make_example(item["numbers"], item["target"], rid, solution=item["solution"])
            for rid, item in zip(ids, items, strict=True)
        ]

    # ----------------------------------------------------------------------------------------------- prompts

    def default_instructions(self) -> str:
        return REASONING_FORMAT

    def reasoning_prompt(self, example: TextExample) -> str:
        numbers, target = example.meta["numbers"], example.meta["target"]
        return (
            f"Using only the numbers {numbers}, write an arithmetic expression equal to exactly {target}. Every "
            "number in the list must be used, each exactly once. You may use +, -, *, / and parentheses as needed. "
            "After reasoning, give only the final expression inside <answer></answer> tags, without an equals sign "
            "or the target number. For example, for the numbers [2, 3, 4] and target 5, a valid answer is: "
            "<answer>\n2*4-3\n</answer>"
        )

    def chat_prompt(self, example: TextExample) -> str:
        numbers, target = example.meta["numbers"], example.meta["target"]
        return (
            f"Use each of the numbers {numbers} exactly once, with +, -, *, / and parentheses, to make {target}. "
            "Put only the final expression (no equals sign) inside <answer></answer> tags."
        )

    def demonstration(self, example: TextExample | Mapping[str, Any], style: str | None = None) -> str:
        """The example's witness expression (generated items carry one; others are solved by brute force) with its
        value, then the answer tag; the reasoning style wraps the value in reasoning tags."""
        example = as_example(example)
        numbers, target = example.meta["numbers"], example.meta["target"]
        solution = example.meta.get("solution") or solve_countdown(numbers, target)
        if solution is None:
            raise ValueError(f"countdown example {example.id!r} has no solution: {numbers} cannot make {target}")
        if (style or self.style) == "chat":
            return f"{solution} = {target}\n<answer>{solution}</answer>"
        return f"<reasoning>\n{solution} = {target}\n</reasoning>\n<answer>\n{solution}\n</answer>"

    # ------------------------------------------------------------------------------------------------ scoring

    def extract_answer(self, text: str) -> str | None:
        """The expression in the first complete ``<answer>`` tag, its decimal digits in ASCII and a closing period
        (a sentence's end) dropped, or None."""
        content = answer_tag(text)
        return None if content is None else ascii_decimal_digits(content).strip().removesuffix(".")

    def reward(self, completion: str, example: TextExample | Mapping[str, Any]) -> float:
        expression = self.extract_answer(completion)
        if expression is None:
            return NO_ANSWER
        example = as_example(example)
        result = evaluate_expression(expression)
        if result is None or sorted(result.literals) != sorted(example.meta["numbers"]):
            return WRONG
        return CORRECT if result.value == example.meta["target"] else WRONG

    def is_correct(self, completion: str, example: TextExample | Mapping[str, Any]) -> bool:
        return self.reward(completion, example) == CORRECT
