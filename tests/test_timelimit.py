"""Hard time limits: a worker process runs the call, an overrun kills it, whatever the call does to resist, in any
thread and in any process. The bounds on elapsed time are wide (seconds for limits of 0.2 s): a call that is not
stopped runs for an hour, so the tests cannot pass by luck, and a loaded machine cannot make them fail."""

from __future__ import annotations

import contextlib
import gc
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from dtm.timelimit import TimeLimitError, Worker, WorkerError, expired_calls

ROOT = Path(__file__).resolve().parents[1]
HOUR = 3600.0


def stubborn(seconds: float) -> str:
    """Sleeps, and swallows every exception a signal handler could raise to interrupt it."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        with contextlib.suppress(BaseException):
            time.sleep(0.01)
    return "done"


def swallowing_gc(seconds: float) -> str:
    """Busy until ``seconds`` have passed, with a garbage-collector callback running all the while (where Python
    drops any exception raised)."""
    gc.callbacks.append(lambda phase, info: None)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        gc.collect(0)
    return "done"


def bounded(call, limit: float = 30.0):
    """``call()`` and the seconds it took, checked to be under ``limit``."""
    start = time.monotonic()
    result = call()
    elapsed = time.monotonic() - start
    assert elapsed < limit, f"took {elapsed:.1f} s"
    return result, elapsed


def test_results_errors_and_closures_come_back():
    offset = 10
    worker = Worker(lambda x, y=1: x + y + offset)  # a closure: inherited by the worker, never pickled
    assert worker.call(1, 2, timeout=HOUR) == 13
    assert worker.call(5, timeout=HOUR) == 16
    divide = Worker(lambda x: 1 / x)
    with pytest.raises(WorkerError, match="ZeroDivisionError"):
        divide.call(0, timeout=HOUR)
    assert divide.call(4, timeout=HOUR) == 0.25  # the same worker goes on after an error
    worker.close()
    assert worker.call(0, timeout=HOUR) == 11  # a new worker after close
    os.kill(worker._children[0].pid, signal.SIGKILL)  # killed from outside between calls
    os.waitpid(worker._children[0].pid, 0)
    assert worker.call(1, timeout=HOUR) == 12  # a new worker takes over
    worker.close()
    divide.close()


@pytest.mark.parametrize("fn", [stubborn, swallowing_gc, time.sleep])
def test_an_overrun_is_killed_however_the_call_resists(fn):
    worker = Worker(fn)
    before = expired_calls()
    with pytest.raises(TimeLimitError):
        bounded(lambda: worker.call(HOUR, timeout=0.2))
    assert expired_calls() == before + 1
    assert worker.call(0.0, timeout=HOUR) in ("done", None)  # a fresh worker serves the next call
    worker.close()


def test_limits_hold_in_threads_and_count_once_each():
    worker = Worker(stubborn)
    before = expired_calls()
    outcomes: list[str] = []

    def one() -> None:
        try:
            worker.call(HOUR, timeout=0.2)
            outcomes.append("returned")
        except TimeLimitError:
            outcomes.append("stopped")

    def all_three() -> None:
        threads = [threading.Thread(target=one) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    bounded(all_three)
    assert outcomes == ["stopped"] * 3 and expired_calls() == before + 3
    worker.close()


def _limited_in_daemon(queue) -> None:
    worker = Worker(stubborn)
    try:
        worker.call(HOUR, timeout=0.2)
        queue.put("returned")
    except TimeLimitError:
        queue.put("stopped")
    queue.put(worker.call(0.0, timeout=HOUR))


def test_limits_hold_in_a_daemonic_process():
    """multiprocessing forbids daemonic processes to start children of their own; a worker is forked directly."""
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    process = context.Process(target=_limited_in_daemon, args=(queue,), daemon=True)
    process.start()
    got, _ = bounded(lambda: [queue.get(timeout=60), queue.get(timeout=60)])
    process.join(timeout=60)
    assert got == ["stopped", "done"] and process.exitcode == 0


def test_nested_workers_die_with_the_killed_worker():
    """A worker that started a worker of its own and overran: both are gone, not just the outer one."""
    inner = Worker(stubborn)

    def outer(path: str) -> None:
        inner.call(0.0, timeout=HOUR)  # starts the inner worker
        Path(path).write_text(str(inner._children[0].pid))
        stubborn(HOUR)

    worker = Worker(outer)
    pid_file = Path(os.environ.get("TMPDIR", "/tmp")) / f"dtm-inner-{os.getpid()}.pid"
    with pytest.raises(TimeLimitError):
        worker.call(str(pid_file), timeout=2.0)
    inner_pid = int(pid_file.read_text())
    pid_file.unlink()
    assert not alive(inner_pid, wait=30.0)


def alive(pid: int, wait: float) -> bool:
    """Whether ``pid`` is still a running (not zombie) process after up to ``wait`` seconds."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return False
        if state in ("Z", "X"):
            return False
        time.sleep(0.05)
    return True


def test_a_worker_exits_when_its_parent_dies_mid_call():
    script = textwrap.dedent(
        """
        import os, threading, time
        from dtm.timelimit import Worker
        worker = Worker(time.sleep)
        threading.Thread(target=worker.call, args=(3600.0,), kwargs={"timeout": 3600.0}, daemon=True).start()
        while not worker._children:
            time.sleep(0.01)
        print(worker._children[0].pid, flush=True)
        os._exit(0)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert not alive(int(done.stdout.split()[0]), wait=30.0)
