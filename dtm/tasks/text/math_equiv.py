"""Are two MATH-style answers equivalent? Normalised string match first, then math-verify under a time limit.

:func:`equivalent` never raises and returns quickly:

1. ``normalise(pred) == normalise(gold)`` (spacing, ``$``, ``\\left``/``\\right``, ``\\dfrac``, ``^\\circ``,
   ``\\text{}`` wrappers, a trailing period...) answers True at once;
2. otherwise, if both answers pass :func:`cheap_enough` (short, shallow, no power towers, no huge literals, exponents
   or factorials: the inputs that make SymPy compute for minutes), ``math_verify.parse`` reads each inside
   ``\\boxed{}`` and ``math_verify.verify(gold, pred)`` decides, under a wall-clock limit of ``timeout`` seconds;
3. anything else (math-verify missing, an error, the time limit, an answer too costly to try) counts as not
   equivalent, so the result falls back to the string match of step 1.

The time limit uses ``SIGALRM`` (``signal.setitimer``), which only works in the main thread of a Unix process; in
other threads, on other systems or while another alarm is pending, math-verify runs without a limit and
:func:`cheap_enough` is the only guard.
math-verify's own signal-based timeouts are switched off (they would cancel ours), and its one-time warning about
that is filtered out of its loggers.
"""

from __future__ import annotations

import logging
import re
import signal
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")
MAX_CHARS = 300
MAX_DEPTH = 10
MAX_POWERS = 4
_LONG_LITERAL = re.compile(r"[0-9]{21,}")
_BIG_FACTORIAL = re.compile(r"[0-9]{4,}\s*!")
_BIG_EXPONENT = re.compile(r"[0-9]{5,}")
_TEXT_WRAPPER = re.compile(r"\\(?:text|textbf|mathrm|mbox)\{([^{}]*)\}")


class _TimeLimit(BaseException):
    """Raised by the SIGALRM handler; a BaseException so that library ``except Exception`` blocks let it through."""


class _DropTimeoutWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "Timeout is disabled" not in record.getMessage()


for _name in ("math_verify.parser", "math_verify.grader"):
    logging.getLogger(_name).addFilter(_DropTimeoutWarning())


def normalise(answer: str) -> str:
    """A canonical string for cheap comparison (whitespace-insensitive, common LaTeX wrappers removed)."""
    s = answer.strip()
    s = _TEXT_WRAPPER.sub(r"\1", s)
    for old, new in (("\\left", ""), ("\\right", ""), ("\\dfrac", "\\frac"), ("\\tfrac", "\\frac"), ("^\\circ", "")):
        s = s.replace(old, new)
    for junk in ("^{\\circ}", "\\!", "\\,", "\\;", "\\:", "\\ ", "$", "\\%", "%"):
        s = s.replace(junk, "")
    s = "".join(s.split()).rstrip(".")
    while len(s) >= 2 and s[0] == "{" and s[-1] == "}" and _balanced(s[1:-1]):
        s = s[1:-1]
    return s


def _balanced(s: str) -> bool:
    depth = 0
    for ch in s:
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if depth < 0:
            return False
    return depth == 0


def _group_after(s: str, i: int) -> tuple[str, int]:
    """The exponent starting at ``s[i]`` (a balanced ``{...}`` or ``(...)`` group, else one token) and its end."""
    while i < len(s) and s[i] == " ":
        i += 1
    if i < len(s) and s[i] in "{(":
        close = {"{": "}", "(": ")"}[s[i]]
        depth = 0
        for j in range(i, len(s)):
            if s[j] == s[i]:
                depth += 1
            elif s[j] == close:
                depth -= 1
                if depth == 0:
                    return s[i : j + 1], j + 1
        return s[i:], len(s)
    token = re.match(r"\\[a-zA-Z]+|[0-9]+|.", s[i:]) if i < len(s) else None
    text = token.group(0) if token else ""
    return text, i + len(text)


def cheap_enough(answer: str) -> bool:
    """False for answers that could make SymPy compute for long (see the module docstring)."""
    if len(answer) > MAX_CHARS or _LONG_LITERAL.search(answer) or _BIG_FACTORIAL.search(answer):
        return False
    depth = 0
    for ch in answer:
        if ch in "({[":
            depth += 1
            if depth > MAX_DEPTH:
                return False
        elif ch in ")}]":
            depth -= 1
    s = answer.replace("**", "^")
    powers = [i for i, ch in enumerate(s) if ch == "^"]
    if len(powers) > MAX_POWERS:
        return False
    for i in powers:
        exponent, end = _group_after(s, i + 1)
        tower = "^" in exponent or s[end:].lstrip().startswith("^")  # a^(b^c) or a^b^c
        if tower or _BIG_EXPONENT.search(exponent) or "!" in exponent:
            return False
    return True


def _raise_time_limit(signum: int, frame: Any) -> None:
    raise _TimeLimit


def call_with_time_limit(fn: Callable[[], T], seconds: float) -> T | None:
    """``fn()``, or None if it raises or is still running after ``seconds`` (main thread on Unix; see docstring)."""
    usable = hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    if usable and signal.getitimer(signal.ITIMER_REAL)[0] > 0:
        usable = False  # someone else's alarm is pending: leave it alone
    if not usable or seconds <= 0:
        try:
            return fn()
        except Exception:
            return None
    previous = signal.signal(signal.SIGALRM, _raise_time_limit)
    try:
        signal.setitimer(signal.ITIMER_REAL, seconds)  # one shot: at most one _TimeLimit can be raised
        try:
            return fn()
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    except (_TimeLimit, Exception):
        return None
    finally:
        signal.signal(signal.SIGALRM, previous)


def _math_verify(pred: str, gold: str) -> bool:
    from math_verify import parse, verify

    gold_parsed = parse("\\boxed{" + gold + "}", parsing_timeout=None)  # type: ignore[arg-type]
    pred_parsed = parse("\\boxed{" + pred + "}", parsing_timeout=None)  # type: ignore[arg-type]
    if not gold_parsed or not pred_parsed:
        return False
    return bool(verify(gold_parsed, pred_parsed, timeout_seconds=None))


def equivalent(pred: str | None, gold: str, timeout: float = 2.0) -> bool:
    """True iff ``pred`` is the same answer as ``gold`` (string match or math-verify; never raises)."""
    if not isinstance(pred, str) or not isinstance(gold, str) or not pred.strip():
        return False
    if normalise(pred) == normalise(gold):
        return True
    if not (cheap_enough(pred) and cheap_enough(gold)):
        return False
    return call_with_time_limit(lambda: _math_verify(pred, gold), timeout) is True
