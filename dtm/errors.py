"""Errors a user acts on: the command line prints their message, without a traceback, and exits with status 2."""

from __future__ import annotations


class RunError(RuntimeError):
    """A run cannot start or go on for a reason its message names, with what to do (e.g. every checkpoint is damaged,
    the loss stayed non-finite, the reward function keeps failing)."""
