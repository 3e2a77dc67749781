"""Traces for the app: one store shared by all sessions within one memory budget, and one queue
that computes them in turn. Sessions keep only the key (model, image hash) and fetch the trace from
the store on every run; a trace the store set aside is computed again, with a short note."""
from __future__ import annotations

import math
import os

import streamlit as st

import detr_viz
from detr_viz.jobs import JobQueue, default_workers
from detr_viz.store import TraceStore, trace_bytes

from .session import K_TRACED

MEMORY_ENV = "DETR_VIZ_TRACE_MEMORY_MB"
DEFAULT_MEMORY_MB = 2000                # a full-size R50 trace holds about 470 MB
POLL_S = 0.4                            # how often a waiting session updates its place in line
LAST_SIZE: dict = {}                    # model key -> bytes of its last trace (the room made for the next)
TRACED_REMEMBERED = 32                  # trace keys a session remembers (to say when one was set aside)


def memory_budget(env: dict | None = None) -> int:
    """Bytes of $DETR_VIZ_TRACE_MEMORY_MB (megabytes, default 2000; a value that is not a positive
    number falls back to the default)."""
    text = (os.environ if env is None else env).get(MEMORY_ENV, "")
    try:
        mb = float(text) if text.strip() else DEFAULT_MEMORY_MB
    except ValueError:
        mb = DEFAULT_MEMORY_MB
    if not math.isfinite(mb) or mb <= 0:
        mb = DEFAULT_MEMORY_MB
    return int(mb * 1e6)


def build_trace_store(env: dict | None = None) -> TraceStore:
    """The app's trace store: the budget of $DETR_VIZ_TRACE_MEMORY_MB, counting each trace with
    everything derived from it (`trace_bytes`)."""
    return TraceStore(memory_budget(env), trace_bytes)


@st.cache_resource(show_spinner=False)
def trace_store() -> TraceStore:
    return build_trace_store()


@st.cache_resource(show_spinner=False)
def trace_queue() -> JobQueue:
    """At most K traces computed at once ($DETR_VIZ_TRACE_WORKERS, default 1)."""
    return JobQueue(default_workers(detr_viz.select_device()))


def _waiting_label(ahead: int, image_name: str) -> str:
    photos = "1 photo is" if ahead == 1 else f"{ahead} photos are"
    return f"{photos} ahead of yours in the line; {image_name} is traced after {'it' if ahead == 1 else 'them'} ..."


def wait_for(ticket, image_name: str, status) -> None:
    """Show the ticket's place in line, then its progress by step, until the job has finished.

    `status` is an st.status container (or anything with update/write). If the session goes away
    (Streamlit stops the run: the next update raises), the caller's `finally` leaves the line."""
    last_step = None
    while not ticket.wait(POLL_S):
        ahead = ticket.place()
        if ahead:
            status.update(label=_waiting_label(ahead, image_name))
            continue
        step = ticket.progress
        if step is not None and step != last_step:
            last_step = step
            status.update(label=f"Step {step[0]} of 7: {step[1]} ...")
            status.write(f"Step {step[0]} of 7: {step[1]}")
        elif step is None:
            status.update(label=f"Running DETR on {image_name} ...")


def get_trace(model_key: str, model, image_bytes: bytes, image_name: str, digest: str,
              status_factory=None) -> detr_viz.Trace:
    """The stored trace of this image under this model, or a new one computed in turn, with the
    place in line and the progress by step. Identical requests (other pages or sessions) share one
    computation. digest: the image's `image_hash`."""
    store = trace_store()
    key = (model_key, digest)
    t = store.get(key)
    if t is not None:
        return t

    def compute(progress):
        found = store.get(key)              # finished by a job that ended after our look above
        if found is not None:
            return found
        store.make_room(LAST_SIZE.get(model_key, 0))     # the new trace counts while it is computed
        t = detr_viz.trace(model, image_bytes, progress=progress)
        LAST_SIZE[model_key] = trace_bytes(t)
        return t
    ticket = trace_queue().submit(key, compute, on_done=store.put)
    try:
        make = status_factory or (lambda: st.status(f"Running DETR on {image_name} ...", expanded=True))
        with make() as status:
            wait_for(ticket, image_name, status)
            t = ticket.result()
            status.update(label=f"Traced {image_name} in {t.total_time:.2f} s on {t.device_name}",
                          state="complete", expanded=False)
        return t
    finally:
        ticket.leave()                      # a session that went away leaves the line


def set_aside_note(ss, key) -> str | None:
    """A note if this session has had trace `key` before but the store no longer holds it (it is
    computed again now)."""
    if key in ss.get(K_TRACED, []) and key not in trace_store():
        return ("The server had set this photo's trace aside to make room for other photos (its memory "
                "budget is shared by everyone); it is computed again now.")
    return None


def remember(ss, key) -> None:
    """Record that this session has had trace `key` (the last TRACED_REMEMBERED keys)."""
    traced = ss.setdefault(K_TRACED, [])
    if key not in traced:
        traced.append(key)
        del traced[:-TRACED_REMEMBERED]


def server_stats() -> dict:
    """What the Home page's Server panel shows."""
    s = trace_store().stats()
    q = trace_queue().stats()
    return {"traces": s.items, "nbytes": s.nbytes, "budget": s.max_bytes, "evictions": s.evictions,
            "running": q["running"], "waiting": q["waiting"], "workers": q["workers"]}
