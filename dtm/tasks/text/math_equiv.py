"""Are two MATH-style answers equivalent? Normalised string match first, then math-verify under a hard time limit.

:func:`equivalent` never raises and returns within its time limit (plus a few milliseconds):

1. ``normalise(pred) == normalise(gold)`` (spacing, ``$``, ``\\left``/``\\right``, ``\\dfrac``, ``^\\circ``,
   ``\\text{}`` wrappers, a trailing period...) answers True at once;
2. otherwise, if both answers pass :func:`cheap_enough` (short, shallow, no power towers, no huge exponents or
   factorials: the inputs that make SymPy compute for minutes; a long literal such as the 31 digits of 2^{100} is
   cheap to read and passes), ``math_verify.parse`` reads each inside
   ``\\boxed{}`` and ``math_verify.verify(gold, pred)`` decides, in a worker process (:mod:`dtm.timelimit`) that is
   killed if it has not answered after ``timeout`` seconds;
3. anything else (math-verify missing, an error, the time limit, an answer too costly to try) counts as not
   equivalent, so the result falls back to the string match of step 1. A time-out is counted by
   :func:`dtm.timelimit.expired_calls`.

The worker process makes the limit hold in any thread of any process and lets nothing inside math-verify swallow
it (a ``SIGALRM`` limit did neither). math-verify is imported here before the worker is forked, so the limit does not
pay for the import. math-verify's own signal-based timeouts are switched off, and its one-time warning about that is
filtered out of its loggers.
"""

from __future__ import annotations

import functools
import logging
import re

from dtm.timelimit import Worker

MAX_CHARS = 300
MAX_DEPTH = 10
MAX_POWERS = 4
_BIG_FACTORIAL = re.compile(r"[0-9]{4,}\s*!")
_BIG_EXPONENT = re.compile(r"[0-9]{5,}")
_TEXT_WRAPPER = re.compile(r"\\(?:text|textbf|mathrm|mbox)\{([^{}]*)\}")


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
    if len(answer) > MAX_CHARS or _BIG_FACTORIAL.search(answer):
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


@functools.cache
def _math_verify_installed() -> bool:
    try:
        import math_verify  # noqa: F401  (imported once here, so the forked worker inherits it)
    except ImportError:
        return False
    return True


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
    if not (cheap_enough(pred) and cheap_enough(gold)) or not _math_verify_installed():
        return False
    try:
        return _VERIFIER.call(pred, gold, timeout=timeout) is True
    except Exception:  # the time limit, an error inside math-verify, its worker dying
        return False


_VERIFIER = Worker(_math_verify)
