"""A safe evaluator for Countdown answers: ``+ - * /`` and parentheses over non-negative integer literals.

Model output is untrusted: the Countdown reward of the public dLLM code bases runs Python's ``eval`` behind a regex
that admits ``**``, so ``9**9**9`` stalls training for minutes. Here nothing is ever executed:

1. the text must be at most ``MAX_CHARS`` characters of ASCII digits, ``+ - * /``, parentheses and whitespace (this
   already rules out names, calls, attributes, strings, exponents and non-ASCII characters; Countdown turns decimal
   digits of other scripts into ASCII before it calls :func:`evaluate`);
2. it is parsed by operator precedence (unary signs first, then ``*`` and ``/``, then ``+`` and ``-``, left to right,
   parentheses to any depth) with explicit stacks, in one pass, so neither deep nesting nor length can exhaust the
   recursion limit. Binary operators stand between operands; a ``-`` or ``+`` where an operand belongs is a sign, as
   a reader (and Python) reads ``-(-(3))`` or ``2*-3``. Not accepted: ``**``, ``//``, ``%``, empty parentheses, or
   juxtaposition such as ``(2)(3)`` or ``4 4``;
3. it is evaluated exactly with :class:`fractions.Fraction` while it is parsed; a literal of more than
   ``MAX_LITERAL_DIGITS`` digits or above ``MAX_LITERAL``, an intermediate numerator or denominator above
   ``MAX_MAGNITUDE`` or a division by zero makes the expression invalid.

Every step is linear in the length and each operation works on numbers of at most 40 digits, so a call takes well
under 100 ms even at ``MAX_CHARS`` (tested on adversarial inputs). :func:`evaluate` returns the exact value and the
literals in order of appearance, or None for any invalid input; it never raises.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

MAX_CHARS = 10_000
MAX_LITERAL = 10**9
MAX_LITERAL_DIGITS = 10
MAX_MAGNITUDE = 10**40
_ALLOWED = re.compile(r"[0-9+\-*/()\s]*")
_TOKEN = re.compile(r"\s*(?:([0-9]+)|([+\-*/()]))")
NEGATE = "neg"  # a unary minus on the operator stack; it binds tighter than any binary operator
_PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2, NEGATE: 3}


@dataclass(frozen=True)
class Evaluation:
    """The exact value of a valid expression and its integer literals, in order of appearance."""

    value: Fraction
    literals: tuple[int, ...]


class _InvalidError(Exception):
    """Raised inside the evaluator only; :func:`evaluate` turns it into None."""


def _apply(op: str, values: list[Fraction]) -> None:
    if op == NEGATE:
        values.append(-values.pop())
        return
    right, left = values.pop(), values.pop()
    if op == "+":
        value = left + right
    elif op == "-":
        value = left - right
    elif op == "*":
        value = left * right
    elif right == 0:
        raise _InvalidError
    else:
        value = left / right
    if abs(value.numerator) > MAX_MAGNITUDE or value.denominator > MAX_MAGNITUDE:
        raise _InvalidError
    values.append(value)


def _parse(text: str) -> Evaluation:
    values: list[Fraction] = []
    ops: list[str] = []  # pending operators and open parentheses
    literals: list[int] = []
    want_operand = True
    position = 0
    for match in _TOKEN.finditer(text):
        if match.start() != position:
            raise _InvalidError
        position = match.end()
        number, symbol = match.groups()
        if want_operand:
            if number is not None:
                digits = number.lstrip("0") or "0"
                if len(digits) > MAX_LITERAL_DIGITS or int(digits) > MAX_LITERAL:
                    raise _InvalidError
                literals.append(int(digits))
                values.append(Fraction(literals[-1]))
                want_operand = False
            elif symbol == "(":
                ops.append(symbol)
            elif symbol == "-":
                ops.append(NEGATE)
            elif symbol != "+":  # a unary plus changes nothing
                raise _InvalidError  # "*", "/" or ")" where an operand belongs: "**", "()", "(*"
        elif symbol == ")":
            while ops and ops[-1] != "(":
                _apply(ops.pop(), values)
            if not ops:
                raise _InvalidError  # unbalanced
            ops.pop()
        elif symbol is not None and symbol != "(":
            while ops and ops[-1] != "(" and _PRECEDENCE[ops[-1]] >= _PRECEDENCE[symbol]:
                _apply(ops.pop(), values)
            ops.append(symbol)
            want_operand = True
        else:
            raise _InvalidError  # an operand right after an operand: "4 4", "(2)(3)", "2(3)"
    if want_operand or text[position:].strip():
        raise _InvalidError  # empty, or ends with an operator
    while ops:
        op = ops.pop()
        if op == "(":
            raise _InvalidError  # unbalanced
        _apply(op, values)
    return Evaluation(values[0], tuple(literals))


def evaluate_expression(expression: str) -> Evaluation | None:
    """Evaluate an arithmetic expression under the rules of the module docstring; None if it is not valid."""
    if not isinstance(expression, str) or len(expression) > MAX_CHARS or not _ALLOWED.fullmatch(expression):
        return None
    try:
        return _parse(expression)
    except _InvalidError:
        return None
