"""Hard time limits that hold in any thread of any process: the limited calls run in a persistent worker process, and
one that overruns its limit is killed with SIGKILL and replaced.

Why not ``SIGALRM``: its handler runs only in the main thread, and the exception it raises can be swallowed (Python
prints and drops exceptions raised inside garbage-collector callbacks and ``__del__`` methods, and any ``except
BaseException`` in library code catches it), so the guarded call runs on past its limit. Why not a thread: a thread
cannot be stopped. A process can always be killed.

A :class:`Worker` runs one function. Its process is forked from the caller on first use, so the function (a closure, a
bound method) is inherited and never pickled; arguments and results are pickled over a socket pair. It serves calls
one at a time until :meth:`Worker.close`, the caller's exit, or a call that overruns: then its process group (with any
workers it started itself) is killed, :class:`TimeLimitError` is raised, and the next call forks a fresh worker.
Threads sharing a worker take turns. A worker whose parent has died exits within 0.1 s, even in the middle of a call.

:func:`expired_calls` counts the calls of this process whose limit ran out, so that code running other limited calls
(a reward that calls math-verify) can count the time-outs inside it. Unix only (``fork``).
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import sys
import threading
import time
import traceback
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing import Pipe
from multiprocessing.connection import Connection
from typing import Any

_counter_lock = threading.Lock()
_expired = 0
_inside_worker = False
_serving: Connection | None = None  # in a worker process: its connection to the parent
_workers: weakref.WeakSet[Worker] = weakref.WeakSet()


class TimeLimitError(Exception):
    """A limited call was still running when its time was up (its worker has been killed)."""


class WorkerError(Exception):
    """The limited call raised (the message holds the worker's traceback), or its worker process died."""


def expired_calls() -> int:
    """How many limited calls of this process have run out of time so far."""
    return _expired


@dataclass
class _Child:
    """A live worker process as its parent sees it."""

    pid: int
    conn: Connection
    own_group: bool  # the worker leads its own process group (it was forked outside any worker)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            if self.own_group:
                os.killpg(self.pid, signal.SIGKILL)
            else:
                os.kill(self.pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)
        self.conn.close()


def _kill_children(children: list[_Child]) -> None:
    while children:
        children.pop().kill()


class Worker:
    """Calls ``fn`` in a persistent worker process under a hard time limit per call (module docstring)."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn
        self._lock = threading.Lock()
        self._children: list[_Child] = []  # the live worker, if any (a list, so the finaliser need not hold self)
        self._finalizer = weakref.finalize(self, _kill_children, self._children)
        _workers.add(self)

    def call(self, *args: Any, timeout: float) -> Any:
        """``fn(*args)`` run in the worker; raises :class:`TimeLimitError` if it takes more than ``timeout`` seconds,
        :class:`WorkerError` if it raises or its worker dies."""
        global _expired
        with self._lock:
            child = self._send(pickle.dumps(args))
            if not child.conn.poll(timeout):
                self._stop()
                with _counter_lock:
                    _expired += 1
                raise TimeLimitError(f"still running after {timeout:g} s")
            try:
                ok, value = pickle.loads(child.conn.recv_bytes())
            except (EOFError, OSError):
                self._stop()
                raise WorkerError("the worker process died during the call") from None
        if not ok:
            raise WorkerError(value)
        return value

    def close(self) -> None:
        """Kill the worker process (a later call starts a new one)."""
        with self._lock:
            self._stop()

    def _send(self, request: bytes) -> _Child:
        """Send a request to the live worker, or to a fresh one if there is none or the last one has died."""
        if self._children:
            try:
                self._children[0].conn.send_bytes(request)
                return self._children[0]
            except OSError:  # it died between calls (killed from outside)
                self._stop()
        child = self._fork()
        self._children.append(child)
        child.conn.send_bytes(request)
        return child

    def _stop(self) -> None:
        _kill_children(self._children)

    def _fork(self) -> _Child:
        parent_end, child_end = Pipe()
        own_group = not _inside_worker
        parent = os.getpid()
        for stream in (sys.stdout, sys.stderr):  # or the worker would write their buffered text a second time
            if stream is not None:
                stream.flush()
        pid = os.fork()
        if pid == 0:  # the worker: serve until the parent goes away, never return into the caller's code
            code = 0
            try:
                parent_end.close()
                _serve(self.fn, child_end, own_group, parent)
            except BaseException:
                code = 1
            finally:
                os._exit(code)
        child_end.close()
        if own_group:
            with contextlib.suppress(PermissionError, ProcessLookupError):
                os.setpgid(pid, pid)  # also done by the worker; whichever runs first closes the race with killpg
        return _Child(pid, parent_end, own_group)


def _serve(fn: Callable[..., Any], conn: Connection, own_group: bool, parent: int) -> None:
    global _inside_worker, _serving
    _inside_worker, _serving = True, conn
    if own_group:
        os.setpgid(0, 0)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)  # an OpenMP pool inherited through fork can deadlock (as in DataLoader workers)
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()
    while True:
        try:
            args = pickle.loads(conn.recv_bytes())
        except (EOFError, OSError):
            return
        try:
            reply = pickle.dumps((True, fn(*args)))
        except BaseException:
            reply = pickle.dumps((False, traceback.format_exc()))
        conn.send_bytes(reply)


def _exit_with_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.1)
    os._exit(1)


def _after_fork_in_child() -> None:
    """Any forked process: the workers it inherited belong to its parent; drop them without killing them."""
    global _counter_lock, _serving
    _counter_lock = threading.Lock()
    if _serving is not None:
        _serving.close()
        _serving = None
    for worker in list(_workers):
        worker._lock = threading.Lock()
        for child in worker._children:
            child.conn.close()
        worker._children.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)
