"""When the widgets compute: one worker thread, the latest request of each lane wins.

Every engine call of a widget runs on its worker thread, off the kernel's main thread, so the
kernel keeps answering the browser while a map is computed. One thread per widget (not a pool).
Calls on one model take turns through the engine's ``model_lock`` (widgets and the user's own
cells alike), since the engine switches the model to eval mode for the length of a call.

Requests go to *lanes* ("explain", "predict", …). A lane holds at most one pending request: a
newer one replaces it (the older is dropped, never queued), and a running request of that lane
is asked to stop (``Job.should_stop``). Lanes are served in the order they were declared, so a
cheap interactive lane (the brush's predictions) can be put before an expensive one.

A process that ends while a worker computes stops every worker first (``atexit``): Python kills
daemon threads as it finalizes, and one killed inside torch's C++ code aborts the process
("terminate called without an active exception", exit status 134) instead of letting it exit.

Trait updates from this thread do reach the browser: ipykernel (6 and later) sends comm messages
through its IOPub thread, whose socket is safe to use from any thread. The widget tests check it
against a real kernel (``tests/widgets/test_explorer.py::test_updates_from_worker_reach_frontend``).
"""

from __future__ import annotations

import atexit
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from typing import Any

EXIT_TIMEOUT = 20.0  # seconds the exit waits for a running job to reach its next stop check
_RUNNING: weakref.WeakSet[Scheduler] = weakref.WeakSet()  # schedulers whose thread was started


@atexit.register
def close_all(timeout: float = EXIT_TIMEOUT) -> None:
    """Stop every worker thread and wait for it (at interpreter exit, before finalization)."""
    for scheduler in list(_RUNNING):
        scheduler.close(timeout)


class Job:
    """One request: ``fn(job)`` runs on the worker; ``job.should_stop()`` turns true once a
    newer request of the same lane arrived or the scheduler is closing."""

    def __init__(self, lane: str, fn: Callable[[Job], Any], scheduler: Scheduler):
        self.lane = lane
        self.fn = fn
        self._scheduler = scheduler
        self._cancelled = threading.Event()

    def cancel(self) -> None:
        self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def should_stop(self) -> bool:
        return self._cancelled.is_set() or self._scheduler.closed


class Scheduler:
    """A worker thread that runs the latest request of each lane.

    The thread starts on the first request and exits after ``idle_exit`` seconds without work
    (and at ``close``), so an explorer that is dropped without ``close`` leaves no thread behind.
    ``on_error(job, exception)`` receives what a job raised (a job normally handles its own).
    """

    def __init__(
        self,
        lanes: Iterable[str] = ("explain",),
        *,
        name: str = "nbexplain-worker",
        idle_exit: float = 30.0,
        on_error: Callable[[Job, BaseException], None] | None = None,
    ):
        self.lanes = list(lanes)
        if not self.lanes or len(set(self.lanes)) != len(self.lanes):
            raise ValueError(f"lanes must be distinct names, at least one; got {self.lanes}")
        self.name = name
        self.idle_exit = idle_exit
        self.on_error = on_error
        self._cond = threading.Condition()
        self._pending: dict[str, Job] = {}
        self._running: Job | None = None
        self._thread: threading.Thread | None = None
        self._closed = False
        self.submitted = 0  # requests received
        self.dropped = 0  # requests replaced by a newer one before they ran
        self.ran = 0  # requests that ran

    # -- requests ----------------------------------------------------------------------------
    def submit(self, lane: str, fn: Callable[[Job], Any]) -> Job:
        """Run ``fn(job)`` on the worker as the latest request of ``lane``."""
        self._check_lane(lane)
        job = Job(lane, fn, self)
        with self._cond:
            if self._closed:
                raise RuntimeError("the widget was closed; create a new one")
            self.submitted += 1
            self._cancel_locked(lane)
            self._pending[lane] = job
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
                self._thread.start()
                _RUNNING.add(self)
            self._cond.notify_all()
        return job

    def cancel(self, lane: str) -> None:
        """Drop the pending request of ``lane`` and ask its running one to stop."""
        self._check_lane(lane)
        with self._cond:
            self._cancel_locked(lane)
            self._cond.notify_all()

    def _cancel_locked(self, lane: str) -> None:
        old = self._pending.pop(lane, None)
        if old is not None:
            old.cancel()
            self.dropped += 1
        if self._running is not None and self._running.lane == lane:
            self._running.cancel()

    def _check_lane(self, lane: str) -> None:
        if lane not in self.lanes:
            raise ValueError(f"unknown lane {lane!r}; valid: {self.lanes}")

    # -- the worker --------------------------------------------------------------------------
    def _next_locked(self) -> Job | None:
        for lane in self.lanes:
            if lane in self._pending:
                return self._pending.pop(lane)
        return None

    def _loop(self) -> None:
        while True:
            with self._cond:
                job = self._next_locked()
                deadline = time.monotonic() + self.idle_exit
                while job is None and not self._closed:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                    job = self._next_locked()
                if job is None or self._closed:
                    if job is not None:
                        job.cancel()
                    if self._thread is threading.current_thread():
                        self._thread = None
                    self._cond.notify_all()
                    return
                self._running = job
            try:
                self._run(job)
            finally:
                with self._cond:
                    self._running = None
                    self._cond.notify_all()

    def _run(self, job: Job) -> None:
        self.ran += 1
        try:
            job.fn(job)
        except Exception as error:  # a job handles its own errors; this is the last resort
            if self.on_error is not None:
                self.on_error(job, error)
            else:
                raise

    def service(self, lanes: Iterable[str]) -> None:
        """Run the pending requests of ``lanes`` now, from inside a running job (its progress
        callback): keeps a cheap lane live while a long job of another lane runs."""
        if threading.current_thread() is not self._thread:
            raise RuntimeError("Scheduler.service must be called from the worker thread")
        for lane in lanes:
            with self._cond:
                job = self._pending.pop(lane, None)
                if job is None:
                    continue
                outer, self._running = self._running, job
            try:
                self._run(job)
            finally:
                with self._cond:
                    self._running = outer
                    self._cond.notify_all()

    # -- waiting and closing -----------------------------------------------------------------
    @property
    def idle(self) -> bool:
        with self._cond:
            return not self._pending and self._running is None

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def in_worker(self) -> bool:
        return threading.current_thread() is self._thread

    def wait(self, timeout: float | None = None) -> bool:
        """Block until no request is pending or running; ``False`` if ``timeout`` passed first."""
        if self.in_worker:
            raise RuntimeError("wait() called from the worker thread would wait for itself")
        with self._cond:
            return self._cond.wait_for(lambda: not self._pending and self._running is None, timeout)

    def close(self, timeout: float | None = 10.0) -> bool:
        """Drop pending requests, ask the running one to stop, and join the thread.
        ``True`` when the thread is gone (a job that never checks ``should_stop`` is waited for
        up to ``timeout`` seconds)."""
        with self._cond:
            self._closed = True
            for lane in list(self._pending):
                self._cancel_locked(lane)
            if self._running is not None:
                self._running.cancel()
            thread = self._thread
            self._cond.notify_all()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            return not thread.is_alive()
        return thread is None

    @property
    def thread(self) -> threading.Thread | None:
        return self._thread
