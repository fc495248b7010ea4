"""A safe evaluator for Countdown answers: ``+ - * /`` and parentheses over non-negative integer literals.

Model output is untrusted: the Countdown reward of the public dLLM code bases runs Python's ``eval`` behind a regex
that admits ``**``, so ``9**9**9`` stalls training for minutes. Here nothing is ever executed:

1. the text must be at most ``MAX_CHARS`` characters of ASCII digits, ``+ - * /``, parentheses and spaces (this
   already rules out names, calls, attributes, strings, exponents, ``**`` of letters and unicode digits such as
   ``'٣'``), with parentheses balanced and nested at most ``MAX_DEPTH`` deep;
2. it is parsed with :func:`ast.parse` and the tree may only hold binary ``+ - * /`` nodes and integer literals
   (no unary signs, ``**``, ``//``, ``%``, calls such as ``(2)(3)``), at most ``MAX_DEPTH`` levels deep;
3. it is evaluated exactly with :class:`fractions.Fraction`; a literal above ``MAX_LITERAL``, an intermediate
   numerator or denominator above ``MAX_MAGNITUDE`` or a division by zero makes the expression invalid.

:func:`evaluate` returns the exact value and the literals in order of appearance, or None for any invalid input;
it never raises.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from fractions import Fraction

MAX_CHARS = 200
MAX_DEPTH = 32
MAX_LITERAL = 10**9
MAX_MAGNITUDE = 10**40
_ALLOWED = re.compile(r"[0-9+\-*/() \t\r\n]+")
_OPS = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
}


@dataclass(frozen=True)
class Evaluation:
    """The exact value of a valid expression and its integer literals, in order of appearance."""

    value: Fraction
    literals: tuple[int, ...]


class _InvalidError(Exception):
    """Raised inside the evaluator only; :func:`evaluate` turns it into None."""


def _paren_depth_ok(text: str) -> bool:
    depth = 0
    for ch in text:
        if ch == "(":
            depth += 1
            if depth > MAX_DEPTH:
                return False
        elif ch == ")":
            depth -= 1
            if depth < 0:
                return False
    return depth == 0


def _eval(node: ast.AST, depth: int, literals: list[int]) -> Fraction:
    if depth > MAX_DEPTH:
        raise _InvalidError
    if isinstance(node, ast.Constant) and type(node.value) is int:
        if node.value > MAX_LITERAL:
            raise _InvalidError
        literals.append(node.value)
        return Fraction(node.value)
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        left = _eval(node.left, depth + 1, literals)
        right = _eval(node.right, depth + 1, literals)
        if isinstance(node.op, ast.Div) and right == 0:
            raise _InvalidError
        value = _OPS[type(node.op)](left, right)
        if abs(value.numerator) > MAX_MAGNITUDE or value.denominator > MAX_MAGNITUDE:
            raise _InvalidError
        return value
    raise _InvalidError


def evaluate(expression: str) -> Evaluation | None:
    """Evaluate an arithmetic expression under the rules of the module docstring; None if it is not valid."""
    if not isinstance(expression, str) or len(expression) > MAX_CHARS:
        return None
    text = " ".join(expression.split())
    if not text or not _ALLOWED.fullmatch(text) or not _paren_depth_ok(text):
        return None
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return None
    literals: list[int] = []
    try:
        value = _eval(tree.body, 1, literals)
    except (_InvalidError, RecursionError, ZeroDivisionError):
        return None
    return Evaluation(value, tuple(literals))
