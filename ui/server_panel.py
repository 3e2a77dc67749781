"""The Home page's "Server" expander, for the teacher: traces held, memory used of the budget,
traces running and waiting, and the process's memory."""
from __future__ import annotations

import os

import streamlit as st

from .session import upload_store
from .traces import MEMORY_ENV, server_stats


def process_rss() -> int | None:
    """Resident memory of this server process in bytes (Linux), else None."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def server_panel() -> None:
    s = server_stats()
    with st.expander("Server", icon=":material/dns:"):
        st.markdown(
            f"**Traces held:** {s['traces']} · **memory used:** {s['nbytes'] / 1e6:,.0f} MB of "
            f"{s['budget'] / 1e6:,.0f} MB  \n"
            f"**Traces running:** {s['running']} (at most {s['workers']} at once) · **waiting:** {s['waiting']}  \n"
            f"**Uploads kept for links:** {len(upload_store())} · **traces set aside so far:** {s['evictions']}")
        rss = process_rss()
        st.caption((f"The server process uses {rss / 1e6:,.0f} MB in all (models, traces, sessions). " if rss else "")
                   + f"The budget is set with {MEMORY_ENV} (megabytes) when the server starts; "
                   "see docs/server.md.")
