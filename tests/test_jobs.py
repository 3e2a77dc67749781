"""The trace queue: K at a time, first come first served, the place in line, one computation for
identical requests, waiters that leave, and nothing kept after a job whose waiters went away."""
import gc
import threading
import time
import weakref

import pytest

from detr_viz.jobs import CANCELLED, DONE, JobQueue, default_workers

WAIT = 10


def until(cond, timeout=WAIT):
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.01)


class Gate:
    """A job body that blocks until opened, recording how many run at once."""

    def __init__(self):
        self.open, self.lock = threading.Event(), threading.Lock()
        self.running = self.most = self.calls = 0

    def __call__(self, value):
        def body(progress):
            with self.lock:
                self.calls += 1
                self.running += 1
                self.most = max(self.most, self.running)
            progress(1, "working")
            self.open.wait(WAIT)
            with self.lock:
                self.running -= 1
            return value
        return body


@pytest.mark.parametrize("k", [1, 2])
def test_at_most_k_jobs_run_at_once(k):
    queue, gate = JobQueue(workers=k), Gate()
    tickets = [queue.submit(i, gate(i)) for i in range(5)]
    until(lambda: queue.stats()["running"] == k)
    time.sleep(0.1)
    assert gate.most == k and queue.stats()["waiting"] == 5 - k
    gate.open.set()
    assert all(t.wait(WAIT) for t in tickets)
    assert [t.result() for t in tickets] == list(range(5)) and gate.most == k


def test_place_in_line_counts_the_jobs_ahead():
    queue, gate = JobQueue(workers=1), Gate()
    first = queue.submit("a", gate("a"))
    until(lambda: first.state == "running")
    second, third = queue.submit("b", gate("b")), queue.submit("c", gate("c"))
    assert (first.place(), second.place(), third.place()) == (0, 1, 2)   # "2 photos ahead of yours"
    assert first.progress == (1, "working") and third.progress is None
    gate.open.set()
    assert third.wait(WAIT) and third.place() == 0 and third.result() == "c"


def test_identical_requests_are_computed_once_and_all_get_the_result():
    queue, gate = JobQueue(workers=1), Gate()
    blocker = queue.submit("busy", gate("busy"))
    until(lambda: blocker.state == "running")
    results = []
    tickets = [queue.submit(("r50", "abc"), gate(object())) for _ in range(3)]
    assert queue.stats()["waiting"] == 1                                 # one job for three requests
    gate.open.set()
    for t in tickets:
        assert t.wait(WAIT)
        results.append(t.result())
    assert gate.calls == 2 and results[0] is results[1] is results[2]


def test_a_waiter_that_leaves_leaves_the_line():
    queue, gate = JobQueue(workers=1), Gate()
    blocker = queue.submit("busy", gate("busy"))
    until(lambda: blocker.state == "running")
    leaving, staying = queue.submit("gone", gate("gone")), queue.submit("kept", gate("kept"))
    assert staying.place() == 2
    leaving.leave()
    leaving.leave()                                                      # twice is harmless
    assert staying.place() == 1 and queue.stats()["waiting"] == 1 and leaving.state == CANCELLED
    gate.open.set()
    assert staying.wait(WAIT) and staying.result() == "kept"
    assert gate.calls == 2                                               # "gone" was never computed


def test_a_shared_job_stays_while_one_of_its_waiters_remains():
    queue, gate = JobQueue(workers=1), Gate()
    blocker = queue.submit("busy", gate("busy"))
    until(lambda: blocker.state == "running")
    one, two = queue.submit("same", gate("same")), queue.submit("same", gate("other"))
    one.leave()
    gate.open.set()
    assert two.wait(WAIT) and two.result() == "same"


def test_a_job_whose_waiters_left_while_it_ran_ends_in_on_done_and_nothing_else_keeps_it():
    class Result:
        pass
    queue, gate, stored = JobQueue(workers=1), Gate(), {}
    ticket = queue.submit("k", gate(Result()), on_done=stored.__setitem__)
    until(lambda: ticket.state == "running")
    ticket.leave()                                                       # the session closed mid-trace
    gate.open.set()
    until(lambda: "k" in stored and queue.stats()["running"] == 0)
    until(lambda: queue.stats()["completed"] == 1)
    ref = weakref.ref(stored.pop("k"))
    gc.collect()
    assert ref() is None                                                 # neither the queue nor the ticket keeps it
    assert queue.stats() == {"running": 0, "waiting": 0, "workers": 1, "completed": 1}


def test_a_failure_reaches_every_waiter_and_a_new_request_computes_again():
    queue = JobQueue(workers=1)
    calls = []

    def boom(progress):
        calls.append(1)
        raise ValueError("bad image")
    tickets = [queue.submit("x", boom) for _ in range(2)]
    for t in tickets:
        assert t.wait(WAIT)
        with pytest.raises(ValueError, match="bad image"):
            t.result()
    again = queue.submit("x", lambda progress: "fine")
    assert again.wait(WAIT) and again.result() == "fine" and again.state == DONE


def test_default_workers_reads_the_environment():
    assert default_workers(env={}) == 1
    assert default_workers(env={"DETR_VIZ_TRACE_WORKERS": "3"}) == 3
    for bad in ("0", "-2", "two", "1e9", "nan"):
        assert default_workers(env={"DETR_VIZ_TRACE_WORKERS": bad}) == 1
