"""Traces wait their turn: a queue that computes at most K jobs at once, in order of arrival.

    queue = JobQueue(workers=1)
    ticket = queue.submit(key, lambda progress: detr_viz.trace(model, image, progress=progress))
    while not ticket.wait(0.5):
        show(ticket.place(), ticket.progress)      # "2 photos ahead of yours", "Step 3 of 7 ..."
    trace = ticket.result()                        # raises what the job raised
    ticket.leave()                                 # always (a finally): a waiter that goes leaves the line

- Single flight: a job asked for under a key that is already waiting or running is not queued
  again; the new ticket joins the existing job, and every ticket gets the same result.
- A job whose tickets have all left before it started is taken out of the line (never computed).
  A job already running finishes (a forward pass cannot be interrupted); `on_done` still receives
  its result (e.g. to put it in a store, where it counts against the budget), and the queue keeps
  no reference to it afterwards.
- The K workers are threads of their own, started on first use, so that the work never runs in a
  caller's thread (Streamlit runs each script run in a new thread).
"""
from __future__ import annotations

import itertools
import logging
import os
import threading
from collections import deque
from collections.abc import Callable, Hashable

log = logging.getLogger("detr_viz.jobs")

WORKERS_ENV = "DETR_VIZ_TRACE_WORKERS"
WAITING, RUNNING, DONE, FAILED, CANCELLED = "waiting", "running", "done", "failed", "cancelled"


def default_workers(device: str = "cpu", env: dict | None = None) -> int:
    """K: $DETR_VIZ_TRACE_WORKERS if it is a whole number >= 1, else 1.

    1 on a GPU (one forward fills it), and 1 on a CPU too: a forward already uses every core
    (torch's intra-op threads), and the forwards of one model are serialised by the model's lock
    anyway, so a second worker only adds a second trace's peak memory (see docs/server.md)."""
    value = (os.environ if env is None else env).get(WORKERS_ENV, "").strip()
    if value:
        try:
            k = int(value)
            if k >= 1:
                return min(k, 64)
        except ValueError:
            pass
        log.warning("%s=%r is not a whole number >= 1; using 1", WORKERS_ENV, value[:40])
    return 1


class Job:
    """One computation; shared by every ticket asking for its key."""

    def __init__(self, key: Hashable, fn: Callable, on_done: Callable | None, seq: int):
        self.key, self.fn, self.on_done, self.seq = key, fn, on_done, seq
        self.state = WAITING
        self.tickets = 0
        self.progress: tuple[int, str] | None = None     # the last (step, text) the job reported
        self.result = self.error = None
        self.done = threading.Event()

    def report(self, step: int, text: str) -> None:
        self.progress = (step, text)


class Ticket:
    """A caller's place in the line for one job."""

    def __init__(self, queue: JobQueue, job: Job):
        self._queue, self._job, self._left = queue, job, False

    @property
    def key(self):
        return self._job.key

    @property
    def state(self) -> str:
        return self._job.state

    @property
    def progress(self) -> tuple[int, str] | None:
        return self._job.progress

    def place(self) -> int:
        """Jobs ahead of this one: those running and those waiting in front of it (0 once it runs)."""
        return self._queue.place(self._job)

    def wait(self, timeout: float | None = None) -> bool:
        """True once the job has finished (done, failed or cancelled)."""
        return self._job.done.wait(timeout)

    def result(self):
        job = self._job
        if job.state == DONE:
            return job.result
        if job.state == FAILED:
            raise job.error
        raise RuntimeError(f"job {job.key!r} is {job.state}")

    def leave(self) -> None:
        """This caller no longer waits (idempotent). The last ticket to leave a waiting job takes it
        out of the line; drops the reference to the job's result."""
        if not self._left:
            self._left = True
            self._queue._leave(self._job)
            self._job = _Gone(self._job)


class _Gone:
    """What a ticket keeps after leave(): the state, not the result."""

    def __init__(self, job: Job):
        self.key, self.state, self.progress, self.done = job.key, job.state, job.progress, job.done
        self.result, self.error = None, None


class JobQueue:
    """At most `workers` jobs run at once, first come first served, one job per key."""

    def __init__(self, workers: int = 1):
        self.workers = max(1, int(workers))
        self._cond = threading.Condition()
        self._line: deque[Job] = deque()          # waiting, in order
        self._running: dict[Hashable, Job] = {}
        self._by_key: dict[Hashable, Job] = {}    # waiting or running
        self._threads: list[threading.Thread] = []
        self._seq = itertools.count()
        self.completed = 0

    def submit(self, key: Hashable, fn: Callable[[Callable[[int, str], None]], object],
               on_done: Callable[[Hashable, object], None] | None = None) -> Ticket:
        """A ticket for `fn(progress)` under `key`; joins the job already waiting or running under it."""
        with self._cond:
            job = self._by_key.get(key)
            if job is None:
                job = Job(key, fn, on_done, next(self._seq))
                self._by_key[key] = job
                self._line.append(job)
                self._start_workers()
                self._cond.notify()
            job.tickets += 1
            return Ticket(self, job)

    def place(self, job) -> int:
        with self._cond:
            if job.state != WAITING:
                return 0
            ahead = sum(1 for j in self._line if j.seq < job.seq)
            return ahead + len(self._running)

    def stats(self) -> dict:
        """{"running": n, "waiting": n, "workers": K, "completed": n}."""
        with self._cond:
            return {"running": len(self._running), "waiting": len(self._line), "workers": self.workers,
                    "completed": self.completed}

    def _leave(self, job) -> None:
        with self._cond:
            job.tickets -= 1
            if job.tickets <= 0 and job.state in (DONE, FAILED):
                job.result = job.error = None       # the last waiter has what it needed
            if job.tickets <= 0 and job.state == WAITING:
                self._line.remove(job)
                self._by_key.pop(job.key, None)
                job.state = CANCELLED
                job.fn = job.on_done = None
                job.done.set()

    def _start_workers(self) -> None:
        self._threads = [t for t in self._threads if t.is_alive()]
        while len(self._threads) < self.workers:
            t = threading.Thread(target=self._work, name=f"detr-viz-trace-{len(self._threads)}", daemon=True)
            self._threads.append(t)
            t.start()

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._line:
                    self._cond.wait()
                job = self._line.popleft()
                job.state = RUNNING
                self._running[job.key] = job
            self._run(job)
            del job                                 # keep no reference while waiting for the next

    def _run(self, job: Job) -> None:
        try:
            value = job.fn(job.report)
            if job.on_done is not None:
                job.on_done(job.key, value)
            job.result, state = value, DONE
            del value                       # only job.result holds it now (cleared below if nobody waits)
        except BaseException as e:         # noqa: BLE001 - handed to every waiter, never lost
            log.error("job %r failed: %s: %s", job.key, type(e).__name__, e)
            job.error, state = e, FAILED
        with self._cond:
            self._running.pop(job.key, None)
            self._by_key.pop(job.key, None)
            job.state, job.fn, job.on_done = state, None, None
            self.completed += 1
            if job.tickets <= 0:
                job.result = None           # nobody waits for it: the store (on_done) has it, or nobody
            job.done.set()
