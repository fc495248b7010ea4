"""Pulling answers out of model output: the ``<answer>`` tag, ``\\boxed{}``, plain numbers and Unicode digits.

All functions take any string, run in time linear in its length and never raise. Numbers (:func:`last_number`,
:func:`parse_number`, used by GSM8K) are read in ASCII digits only; Sudoku and Countdown read other digits through
:func:`grid_digits` and :func:`ascii_decimal_digits`.
"""

from __future__ import annotations

import re
import unicodedata
from fractions import Fraction
from itertools import islice

OPEN_TAG, CLOSE_TAG = "<answer>", "</answer>"
MAX_NUMBER_CHARS = 64
_NUMBER = re.compile(r"-?[0-9][0-9,]*(?:\.[0-9]+)?")
_PLAIN_NUMBER = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")
_UNICODE_DECIMAL = re.compile(r"\d")  # str patterns: every character of Unicode category Nd, ASCII digits included


def answer_tag(text: str) -> str | None:
    """The stripped content of the first complete ``<answer>...</answer>`` pair, or None if there is none.

    The pair is closed by the first ``</answer>`` that follows an ``<answer>``, and opened by the nearest ``<answer>``
    before it; stray tags before or after the pair change nothing. So ``<answer>a</answer></answer>`` and
    ``</answer><answer>a</answer><answer>b</answer>`` give ``"a"``, and ``<answer>x<answer>a</answer>`` gives ``"a"``.
    An ``<answer>`` that is never closed does not count as an answer tag.
    """
    if not isinstance(text, str):
        return None
    start = text.find(OPEN_TAG)
    if start < 0:
        return None
    end = text.find(CLOSE_TAG, start + len(OPEN_TAG))
    if end < 0:
        return None
    start = text.rfind(OPEN_TAG, start, end)
    return text[start + len(OPEN_TAG) : end].strip()


def ascii_decimal_digits(text: str) -> str:
    """``text`` with every Unicode decimal digit (category Nd: Arabic-Indic, full-width, Devanagari, mathematical bold
    digits...) replaced by its ASCII digit; every other character is kept as it is, superscript digits included."""
    if text.isascii():
        return text
    return _UNICODE_DECIMAL.sub(lambda m: str(unicodedata.decimal(m.group())), text)


def grid_digits(text: str, limit: int | None = None) -> str:
    """The digits of ``text`` in order, as ASCII, the first ``limit`` of them (all if None); other characters are
    skipped. Every character that reads as a digit counts: the text is NFKC-normalised first (full-width,
    superscript, subscript, circled and mathematical digits become ASCII digits), then every decimal digit
    (ASCII, Arabic-Indic, Devanagari...) is taken."""
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text)
    found = islice(_UNICODE_DECIMAL.finditer(text), limit)
    return "".join(str(unicodedata.decimal(m.group())) for m in found)


def last_boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{...}`` (or ``\\fbox{...}``, or ``\\boxed x``) in ``text``, or None.

    Braces are matched; an unclosed ``\\boxed{`` yields None.
    """
    if not isinstance(text, str):
        return None
    start = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if start < 0:
        return None
    i = start + (len("\\boxed") if text.startswith("\\boxed", start) else len("\\fbox"))
    if i < len(text) and text[i] == " ":  # "\boxed 5": the token up to the next space or dollar
        token = re.match(r" +([^ $]+)", text[i:])
        return token.group(1) if token else None
    if i >= len(text) or text[i] != "{":
        return None
    depth = 0
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1 : j].strip()
    return None


def last_number(text: str) -> str | None:
    """The last number written in ``text`` (ASCII digits, optional sign, thousands commas, decimal part), or None."""
    if not isinstance(text, str):
        return None
    last = None
    for match in _NUMBER.finditer(text):
        last = match.group(0)
    return last.rstrip(",") if last is not None else None


def parse_number(text: str) -> Fraction | None:
    """The exact value of a number such as ``"1,234"``, ``"$18.50"``, ``"72.0"``, ``"50%"`` or ``"-3."``, else None.

    Commas, dollar signs, spaces, a trailing ``%`` and a trailing ``.`` are dropped; what is left must be a plain
    decimal of at most 64 characters (no exponents: ``"1e999999999"`` is not a number here).
    """
    if not isinstance(text, str):
        return None
    cleaned = text.strip().replace(",", "").replace("$", "").replace(" ", "").removesuffix("%").rstrip(".")
    if len(cleaned) > MAX_NUMBER_CHARS or not _PLAIN_NUMBER.fullmatch(cleaned):
        return None
    return Fraction(cleaned)


def format_number(value: Fraction) -> str:
    """Canonical text of a parsed number: ``"18"``, ``"-2.5"`` (exact decimals), else ``"p/q"``."""
    if value.denominator == 1:
        return str(value.numerator)
    denominator, twos, fives = value.denominator, 0, 0
    while denominator % 2 == 0:
        denominator //= 2
        twos += 1
    while denominator % 5 == 0:
        denominator //= 5
        fives += 1
    if denominator != 1:
        return f"{value.numerator}/{value.denominator}"
    places = max(twos, fives)
    scaled = abs(value.numerator) * 10**places // value.denominator
    sign = "-" if value < 0 else ""
    whole, frac = divmod(scaled, 10**places)
    return f"{sign}{whole}.{str(frac).zfill(places).rstrip('0')}"
