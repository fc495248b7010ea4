"""Closed checks of the text tasks' answer extraction and rewards, the safe evaluator and math equivalence."""

from __future__ import annotations

import threading
import time
from fractions import Fraction

import pytest

from dtm.tasks.text import get_text_task, math_equiv
from dtm.tasks.text.arithmetic import MAX_CHARS, evaluate_expression
from dtm.tasks.text.base import TextExample
from dtm.tasks.text.extract import (
    answer_tag,
    format_number,
    last_boxed,
    last_number,
    parse_number,
)
from dtm.tasks.text.math_equiv import cheap_enough, equivalent, normalise
from dtm.tasks.text.sudoku import SudokuTextTask
from dtm.timelimit import Worker, expired_calls

# ------------------------------------------------------------------------------------------------ safe evaluator


def full_width(text: str) -> str:
    """``text`` with its ASCII digits written as full-width digits (U+FF10 to U+FF19)."""
    return text.translate({ord("0") + i: 0xFF10 + i for i in range(10)})


@pytest.mark.parametrize(
    ("expression", "value", "literals"),
    [
        ("2*4-3", 5, (2, 4, 3)),
        ("2+3*4", 14, (2, 3, 4)),  # precedence
        ("(2+3)*4", 20, (2, 3, 4)),  # parentheses
        ("10-4-3", 3, (10, 4, 3)),  # left associativity
        ("10-(4-3)", 9, (10, 4, 3)),
        ("7/2", Fraction(7, 2), (7, 2)),  # exact division
        ("(90/5)/3", 6, (90, 5, 3)),
        ("1/3+1/3+1/3", 1, (1, 3, 1, 3, 1, 3)),
        (" \n 44 + 19\t+ 35 \n", 98, (44, 19, 35)),  # whitespace, newlines inside
        ("((((5))))", 5, (5,)),
        ("0", 0, (0,)),
        ("007+1", 8, (7, 1)),  # leading zeros read as a person reads them
        ("(" * 4000 + "44+19" + ")" * 4000 + "+35", 98, (44, 19, 35)),  # nested far deeper than Python's parser allows
        ("+".join(["1"] * 3000), 3000, (1,) * 3000),  # a long chain: no recursion anywhere
        ("((44)+((19)))" + " " * 5000 + "+35", 98, (44, 19, 35)),
        ("1000000000", 10**9, (10**9,)),  # MAX_LITERAL itself
        ("0" * 5000 + "7", 7, (7,)),  # many digits, small value
        ("-3+4", 1, (3, 4)),  # a unary minus, as a reader reads it
        ("+3", 3, (3,)),
        ("-(-(44+19+35))", 98, (44, 19, 35)),
        ("2*-3", -6, (2, 3)),  # a sign binds tighter than any binary operator
        ("-3*2", -6, (3, 2)),
        ("2-(-3)", 5, (2, 3)),
    ],
)
def test_evaluate_valid(expression, value, literals):
    result = evaluate_expression(expression)
    assert result is not None
    assert result.value == value
    assert result.literals == literals


@pytest.mark.parametrize(
    "expression",
    [
        "1/0",  # division by zero
        "5/(3-3)",
        "(2-2)/(1-1)",
        "9**9**9",  # exponent
        "2**3",
        "7//2",  # floor division
        "7%2",  # modulo: not even in the character set
        "--",  # signs without an operand
        "3-",
        "(2)(3)",  # a call
        "abs(3)",  # names and calls
        "x+1",
        "(3).real",  # attribute
        "__import__('os').system('true')",
        "2.5*2",  # non-integer literals
        "1e3",
        "0x10",
        "1_000",
        "2 3",
        "",
        "   ",
        "()",
        "(1+2",
        "1+2)",
        ")(",
        "2*4-3=5",  # an equals sign
        "٣+1",  # unicode digits
        "\uff13+1",  # full-width digit
        "1" * 10 + "+1",  # a literal above MAX_LITERAL
        "*".join(["999999999"] * 5),  # an intermediate result above MAX_MAGNITUDE
        "4 4",  # juxtaposition
        "2(3)",
        "(1)2",
        "1+",
        "*2",
        "((1)",
        "1+(2*)3",
        "1+" * MAX_CHARS + "1",  # too long
        "(" * 5000 + "1" + ")" * 5000,
        "9" * 5000,
    ],
)
def test_evaluate_invalid(expression):
    assert evaluate_expression(expression) is None


HOSTILE = [
    "9**9**9**9",
    "(" * 100_000,
    "1" * 100_000,
    "1+" * 50_000 + "1",
    "99999999*" * 20 + "9",
    "(" * (MAX_CHARS // 2) + "1" + ")" * (MAX_CHARS // 2 - 1),  # nesting at the length limit, one ")" short
    "(" * (MAX_CHARS // 2 - 1) + "1" + ")" * (MAX_CHARS // 2 - 1),  # the same, valid
    "+".join(["999999999"] * (MAX_CHARS // 10)),  # the most operations that fit, each on large numbers
    "*".join(["7"] * (MAX_CHARS // 2)),  # a product that outgrows MAX_MAGNITUDE
    "/".join(["7"] * (MAX_CHARS // 2)),  # a quotient whose denominator does
    "1/(" * (MAX_CHARS // 5) + "1" + ")" * (MAX_CHARS // 5),  # a continued fraction, deep
    "0" * (MAX_CHARS - 1) + "1",  # a literal with many digits
    "1" * MAX_CHARS,
    " " * (MAX_CHARS - 1) + "1",
]


@pytest.mark.parametrize("text", HOSTILE, ids=range(len(HOSTILE)))
def test_evaluate_returns_within_100_ms_on_hostile_input(text):
    """Measured in this thread's CPU time, which a loaded machine does not inflate (the work is the bound)."""
    start = time.thread_time()
    evaluate_expression(text)
    assert time.thread_time() - start < 0.1


def test_evaluate_rejects_non_strings():
    assert evaluate_expression(None) is None  # type: ignore[arg-type]
    assert evaluate_expression(5) is None  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------------- extraction


def test_answer_tag():
    assert answer_tag("<reasoning>x</reasoning>\n<answer>\n 2*4-3 \n</answer>") == "2*4-3"
    assert answer_tag("<answer>1</answer> then <answer>2</answer>") == "1"  # the first complete pair wins
    assert answer_tag("<answer>(4+(36*61))</answer></answer>") == "(4+(36*61))"  # a stray closing tag after it
    assert answer_tag("</answer> <answer>a</answer> <answer>b</answer>") == "a"  # and one before it
    assert answer_tag("<answer>a</answer>b</answer>") == "a"
    assert answer_tag("<answer>a<answer>b</answer>") == "b"  # a stray opening tag: the nearest one opens the pair
    assert answer_tag("<answer></answer>") == ""
    assert answer_tag("<answer>unclosed") is None
    assert answer_tag("</answer><answer>") is None
    assert answer_tag("no tags") is None
    assert answer_tag("") is None


def test_last_boxed():
    assert last_boxed("so \\boxed{\\frac{1}{2}} and") == "\\frac{1}{2}"
    assert last_boxed("\\boxed{1} then \\boxed{2}") == "2"
    assert last_boxed("\\boxed{a{b}c}") == "a{b}c"
    assert last_boxed("\\boxed 5$") == "5"
    assert last_boxed("\\fbox{7}") == "7"
    assert last_boxed("\\boxed{unclosed") is None
    assert last_boxed("\\boxed") is None
    assert last_boxed("nothing") is None


def test_numbers():
    assert last_number("it costs 1,234 dollars, or 12.50 each") == "12.50"
    assert last_number("ends with 1,000,") == "1,000"
    assert last_number("negative -7") == "-7"
    assert last_number("٣ is not ASCII") is None
    assert parse_number("$1,000") == 1000
    assert parse_number("72.0") == 72
    assert parse_number("-3.") == -3
    assert parse_number("50%") == 50
    assert parse_number("1e5") is None
    assert parse_number("1" * 100) is None
    assert parse_number("abc") is None
    assert format_number(Fraction(5, 2)) == "2.5"
    assert format_number(Fraction(-1, 8)) == "-0.125"
    assert format_number(Fraction(1000)) == "1000"
    assert format_number(Fraction(1, 3)) == "1/3"


# ---------------------------------------------------------------------------------------------------- countdown


COUNTDOWN = TextExample("c", "", "98", {"numbers": [44, 19, 35], "target": 98})


@pytest.mark.parametrize(
    ("completion", "reward"),
    [
        ("<reasoning>44+19=63, 63+35=98</reasoning>\n<answer>\n44 + 19 + 35\n</answer>", 1.0),
        ("<answer>35+(44+19)</answer>", 1.0),
        ("<answer>(44+19)+35</answer> trailing text", 1.0),
        ("<answer>44+19+36</answer>", 0.1),  # a number not given
        ("<answer>44+19</answer>", 0.1),  # a number missing
        ("<answer>44+19+35+0</answer>", 0.1),  # an extra number
        ("<answer>44+44+10</answer>", 0.1),  # a repeated number
        ("<answer>44*19-35</answer>", 0.1),  # uses the numbers, wrong value
        ("<answer>44+19+35=98</answer>", 0.1),  # an equals sign
        ("<answer>44+19+35/0</answer>", 0.1),  # division by zero
        ("<answer>9**9**9</answer>", 0.1),
        ("<answer>__import__('os')</answer>", 0.1),
        ("<answer></answer>", 0.1),
        ("<answer>44+19+35", 0.0),  # unclosed tag
        ("<answer>44+19+35</answer></answer>", 1.0),  # a stray closing tag does not join the answer
        ("<answer>44+19+35</answer> or <answer>44+19</answer>", 1.0),  # the first answer counts
        ("<answer>" + full_width("44+19+35") + "</answer>", 1.0),  # full-width digits are digits
        ("<answer>٤٤+١٩+٣٥</answer>", 1.0),  # Arabic-Indic digits too
        ("<answer>44+19+3⁵</answer>", 0.1),  # a superscript is a power, not a digit
        ("<answer>" + "(" * 1000 + "44+19" + ")" * 1000 + "+35</answer>", 1.0),  # deep but valid
        ("<answer>-(-(44+19+35))</answer>", 1.0),  # signs: a reader's value
        ("<answer>44-(-19)+35</answer>", 1.0),
        ("<answer>-44+19+35</answer>", 0.1),  # a sign changes the value: 10
        ("<answer>44+19+35.</answer>", 1.0),  # a sentence's closing period
        ("<answer>44+19+35 . </answer>", 1.0),
        ("<answer>44+19+35!</answer>", 0.1),  # other punctuation is not an expression
        ("<answer>044+019+35</answer>", 1.0),  # leading zeros: the numbers a reader reads
        ("<answer>44+19+3.5</answer>", 0.1),  # a decimal point inside is not a period
        ("44+19+35", 0.0),  # no tag
        ("", 0.0),
    ],
)
def test_countdown_reward(completion, reward):
    task = get_text_task("countdown")
    assert task.reward(completion, COUNTDOWN) == reward
    assert task.reward(completion, COUNTDOWN.to_meta()) == reward
    assert task.is_correct(completion, COUNTDOWN) == (reward == 1.0)
    assert task.score(completion, COUNTDOWN) == float(reward == 1.0)


def test_countdown_division_and_order():
    task = get_text_task("countdown")
    example = TextExample("c", "", "6", {"numbers": [90, 5, 3], "target": 6})
    assert task.reward("<answer>90/5/3</answer>", example) == 1.0
    assert task.reward("<answer>90/(5*3)</answer>", example) == 1.0
    assert task.reward("<answer>90/5*3</answer>", example) == 0.1  # 54
    assert task.extract_answer("<answer> 90/5/3 </answer>") == "90/5/3"


# ------------------------------------------------------------------------------------------------------- sudoku

SUDOKU = TextExample("s", "", "", {"puzzle": "0030340241202040", "solution": "1234341241232341"})  # 7 empty cells


@pytest.mark.parametrize(
    ("completion", "cells"),
    [
        ("<answer>\n1234341241232341\n</answer>", 7),
        ("<reasoning>..</reasoning><answer>1234 3412 4123 2341</answer>", 7),  # separators dropped
        ("<answer>0000000000000000</answer>", 0),
        ("<answer>2234341241232341</answer>", 6),  # first (empty) cell wrong
        ("<answer>1204341241232341</answer>", 7),  # a given cell changed: givens are not scored (never correct)
        ("<answer>2204341241232341</answer>", 6),
        ("<answer>1234</answer>", 3),  # too short: cells 0, 1, 3 right, the missing ones wrong
        ("<answer>12343412412323419999</answer>", 7),  # too long: the first 16 digits count
        ("<answer>R1: 1 2 3 4</answer>", 1),  # "11234": row labels are digits too (as in d1/SPG)
        ("<answer>١٢٣٤٣٤١٢٤١٢٣٢٣٤١</answer>", 7),  # Arabic-Indic digits are digits
        ("<answer>" + full_width("1234341241232341") + "</answer>", 7),  # full-width
        ("<answer>¹²³⁴³⁴¹²⁴¹²³²³⁴¹</answer>", 7),  # superscript
        ("<answer>1²34341241232341</answer>", 7),  # one odd digit does not shift the later cells
        ("<answer>1234341241232341</answer></answer>", 7),  # a stray closing tag
        ("<answer></answer>", 0),
        ("1234341241232341", 0),  # no tag
        ("<answer>1234341241232341", 0),  # unclosed
    ],
)
def test_sudoku_reward(completion, cells):
    task = get_text_task("sudoku")
    assert task.score(completion, SUDOKU) == pytest.approx(cells / 7)
    assert task.reward(completion, SUDOKU) == pytest.approx(2.0 * cells / 7)
    altered_given = "1204341241232341" in completion
    assert task.is_correct(completion, SUDOKU) == (cells == 7 and not altered_given)


def test_sudoku_extract_answer():
    task = get_text_task("sudoku")
    assert task.extract_answer("<answer>12 34\n</answer>") == "1234"
    assert task.extract_answer("<answer>none</answer>") == ""
    assert task.extract_answer("<answer>" + full_width("12 3") + "٤</answer>") == "1234"
    assert task.extract_answer("none") is None


# -------------------------------------------------------------------------------------------------------- gsm8k


GSM8K = TextExample("g", "", "1000")


@pytest.mark.parametrize(
    ("completion", "extracted", "reward"),
    [
        ("<reasoning>..</reasoning>\n<answer>\n\\boxed{1000}\n</answer>", "1000", 1.0),
        ("<answer>1,000</answer>", "1000", 1.0),
        ("<answer>$1,000.00</answer>", "1000", 1.0),
        ("<answer>The answer is 1000.</answer>", "1000", 1.0),
        ("<answer>\\boxed{1000.0}</answer> and later 7", "1000", 1.0),
        ("<answer>999</answer> but really 1000", "999", 0.0),  # the tag wins
        ("<answer>\\boxed{12} 1000</answer>", "12", 0.0),  # the boxed answer wins inside the tag
        ("I think \\boxed{1000}.", "1000", 1.0),  # no tag: last boxed
        ("steps 5 + 995\n#### 1,000", "1000", 1.0),  # no tag: after ####
        ("so it is 10 then 1000", "1000", 1.0),  # no tag: last number
        ("<answer>no number</answer> 1000", None, 0.0),
        ("<answer>1e3</answer>", "3", 0.0),
        ("<answer>٣</answer>", None, 0.0),
        ("nothing here", None, 0.0),
        ("", None, 0.0),
    ],
)
def test_gsm8k_reward(completion, extracted, reward):
    task = get_text_task("gsm8k")
    assert task.extract_answer(completion) == extracted
    assert task.reward(completion, GSM8K) == reward
    assert task.is_correct(completion, GSM8K) == (reward == 1.0)


def test_gsm8k_decimal_and_negative_references():
    task = get_text_task("gsm8k")
    assert task.reward("<answer>3.50</answer>", TextExample("g", "", "3.5")) == 1.0
    assert task.reward("<answer>-4</answer>", TextExample("g", "", "-4")) == 1.0
    assert task.reward("<answer>4</answer>", TextExample("g", "", "-4")) == 0.0


# ------------------------------------------------------------------------------------------------------ math500


@pytest.mark.parametrize(
    ("completion", "gold", "reward"),
    [
        ("<answer>\\boxed{\\frac{\\sqrt{3}}{2}}</answer>", "\\frac{\\sqrt{3}}{2}", 1.0),  # string match
        ("<answer>\\boxed{\\dfrac{\\sqrt{3}}{2}}</answer>", "\\frac{\\sqrt{3}}{2}", 1.0),  # normalised match
        ("<answer>\\boxed{\\sqrt{3}/2}</answer>", "\\frac{\\sqrt{3}}{2}", 1.0),  # math-verify
        ("<answer>\\boxed{0.5}</answer>", "\\frac{1}{2}", 1.0),
        ("<answer>[-2, 7]</answer>", "[-2,7]", 1.0),  # tag content without \boxed
        ("The result is \\boxed{3}.", "3", 1.0),  # no tag: last boxed
        ("<answer>\\boxed{4}</answer>", "3", 0.0),
        ("<answer>\\boxed{\\sqrt{2}/2}</answer>", "\\frac{\\sqrt{3}}{2}", 0.0),
        ("The result is 3.", "3", 0.0),  # no tag and no box: no answer
        ("<answer>\\boxed{9^{9^{9^{9}}}}</answer>", "3", 0.0),  # too costly to try: string match only
        ("<answer>\\boxed{</answer>", "3", 0.0),
        ("", "3", 0.0),
    ],
)
def test_math500_reward(completion, gold, reward):
    task = get_text_task("math500")
    example = TextExample("m", "", gold)
    assert task.reward(completion, example) == reward
    assert task.is_correct(completion, example) == (reward == 1.0)


def test_math500_extract_answer():
    task = get_text_task("math500")
    assert task.extract_answer("<answer>\\boxed{x+1}</answer>") == "x+1"
    assert task.extract_answer("<answer> 12 </answer>") == "12"
    assert task.extract_answer("\\boxed{a} \\boxed{b}") == "b"
    assert task.extract_answer("plain 5") is None


def test_math_equivalence_helpers():
    assert normalise(" \\left( 3, \\dfrac{\\pi}{2} \\right) ") == "(3,\\frac{\\pi}{2})"
    assert normalise("90^\\circ") == "90"
    assert normalise("\\text{Evelyn}") == "Evelyn"
    assert normalise("{5}.") == "5"
    assert cheap_enough("x^2+2^{10}")
    for costly in ["9^{9^{9}}", "9**9**9", "2^{99999}", "12345!", "(" * 20 + ")" * 20, "x" * 400, "2^(3^4)"]:
        assert not cheap_enough(costly), costly
    assert not equivalent(None, "3")
    assert not equivalent("  ", "3")
    assert equivalent("3", "3")


def test_math_verify_is_used_beyond_the_string_match():
    assert cheap_enough("1" * 30)  # a long literal costs SymPy nothing: the guard bounds the work, not the answer
    assert equivalent(str(2**100), "2^{100}") and equivalent("2^{100}", str(2**100))
    assert not equivalent(str(2**100 + 1), "2^{100}")
    assert normalise("\\frac{1}{2}") != normalise("0.5")
    assert equivalent("\\frac{1}{2}", "0.5")
    assert not equivalent("\\frac{1}{3}", "0.5")


def hanging_verify(pred: str, gold: str) -> bool:
    time.sleep(3600)
    return True


@pytest.mark.parametrize("in_thread", [False, True])
def test_a_hanging_math_verify_is_stopped_and_counted(monkeypatch, in_thread):
    """math-verify stuck (here: asleep for an hour) costs the time limit, in the main thread or any other, scores
    not equivalent and is counted; the next comparison gets a working verifier again."""
    hanging = Worker(hanging_verify)
    monkeypatch.setattr(math_equiv, "_VERIFIER", hanging)
    before = expired_calls()
    results: list[bool] = []

    def compare() -> None:
        results.append(equivalent("x+1", "1+x", timeout=0.2))

    start = time.monotonic()
    if in_thread:
        thread = threading.Thread(target=compare)
        thread.start()
        thread.join()
    else:
        compare()
    assert results == [False] and time.monotonic() - start < 30
    assert expired_calls() == before + 1
    hanging.close()
    monkeypatch.undo()
    assert equivalent("x+1", "1+x", timeout=60.0)


@pytest.mark.parametrize(
    ("answer", "reward", "correct"),
    [
        ("1234341221434321", 2.0, True),  # the solution
        ("1234341221434421", 2.0, False),  # last row 4 4 2 1: a given altered, a row and a column rule broken
        ("4234341221434321", 2.0, False),  # a given altered, the empty cells right
        ("123434122143432", 2.0 * 8 / 9, False),  # 15 digits: the last empty cell missing
    ],
)
def test_sudoku_answer_that_alters_a_given_is_never_correct(answer, reward, correct):
    """The reward counts the empty cells only (the paper's rule); being correct needs a solution of the puzzle."""
    task = SudokuTextTask()
    example = {"puzzle": "1030301001030300", "solution": "1234341221434321", "id": "t"}
    completion = f"<answer>{answer}</answer>"
    assert task.reward(completion, example) == pytest.approx(reward)
    assert task.is_correct(completion, example) is correct
