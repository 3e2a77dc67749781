"""The what-if experiment of a session and its form in the URL (`wi_*` query parameters), so that a
teacher can share a link to a given experiment. URL values are checked one by one: a value that
makes no sense gets a note, and the default takes over.

    wi_q=7  wi_heads=2,5  wi_renorm=1  wi_att=uniform | query:3 | shift:3,-2  wi_only=attention | features
    wi_skips=res4,res2  wi_drop=0,7  wi_stuff=0  wi_small=0  wi_thr=0.50  wi_box=60,0,124,49
"""
from __future__ import annotations

import streamlit as st

from detr_viz import whatif
from detr_viz.trace import kept_queries

EXP = "wi_experiment"            # session key: the experiment (a plain dict, survives page switches)
URL_SEEN = "wi_url_seen"         # session key: the wi_* parameters last read or written
NOTES = "wi_notes"               # session key: notes about URL values that were not used

# The experiment with nothing changed: the model's own output.
DEFAULTS = {"q": None, "heads": (), "renorm": False, "att": "none", "att_q": 0, "dx": 0, "dy": 0,
            "only": "both", "skips": (), "drop": (), "stuff": True, "small": True, "thr": None, "box": None}
ONLY_VALUES = ("both", "attention", "features")
URL_KEYS = ("wi_q", "wi_heads", "wi_renorm", "wi_att", "wi_only", "wi_skips", "wi_drop", "wi_stuff", "wi_small",
            "wi_thr", "wi_box")


def experiment() -> dict:
    """This session's experiment (created with the defaults)."""
    return st.session_state.setdefault(EXP, dict(DEFAULTS))


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip() != ""]


def _flag(text: str) -> bool:
    if text not in ("0", "1"):
        raise ValueError("give 0 or 1")
    return text == "1"


def parse(params: dict, trace) -> tuple[dict, list[str]]:
    """wi_* parameters -> (experiment, notes): every value checked against the trace's model and
    photo; one that makes no sense is left out (its default stays) and named in a note."""
    M, N, (h, w) = trace.config.nheads, trace.config.num_queries, trace.grid
    H, Wd = trace.pre.original_size
    exp, notes = dict(DEFAULTS), []

    def take(key, convert, check, what):
        if key not in params:
            return
        raw = str(params[key])
        try:
            value = convert(raw)
            ok = check(value)
        except ValueError:
            ok = False
        if ok:
            exp[key[3:]] = value
        else:
            notes.append(f"The link's `{key}={raw}` is not understood ({what}); the default is used instead.")

    take("wi_q", int, lambda q: 0 <= q < N, f"a query 0..{N - 1}")
    take("wi_heads", lambda s: tuple(sorted(set(_ints(s)))), lambda hs: all(0 <= m < M for m in hs),
         f"heads 0..{M - 1}, separated by commas")
    take("wi_renorm", _flag, lambda v: True, "0 or 1")
    if "wi_att" in params:
        _attention(str(params["wi_att"]), exp, notes, N, h, w)
    take("wi_only", str, lambda v: v in ONLY_VALUES, " or ".join(ONLY_VALUES))
    take("wi_skips", lambda s: tuple(k for k in whatif.SKIPS if k in s.split(",")),
         lambda v: set(v) == {k for k in str(params["wi_skips"]).split(",") if k}, ", ".join(whatif.SKIPS))
    take("wi_stuff", _flag, lambda v: True, "0 or 1")
    take("wi_small", _flag, lambda v: True, "0 or 1")
    take("wi_thr", float, lambda v: 0.0 <= v <= 0.99, "a threshold between 0 and 0.99")
    kept = kept_queries(trace["pred_logits"], trace.threshold if exp["thr"] is None else exp["thr"])
    take("wi_drop", lambda s: tuple(sorted(set(_ints(s)))), lambda v: set(v) <= set(kept) and len(v) < len(kept),
         f"kept queries ({', '.join(map(str, kept)) or 'none'}), at least one left")
    take("wi_box", lambda s: tuple(_ints(s)), lambda b: len(b) == 4 and 0 <= b[0] < b[2] <= Wd
         and 0 <= b[1] < b[3] <= H, f"x0,y0,x1,y1 inside the {Wd} x {H} photo")
    for key in sorted(k for k in params if k not in URL_KEYS):
        notes.append(f"The link's `{key}` is not a what-if setting; it is ignored.")
    return exp, notes


def _attention(raw: str, exp: dict, notes: list, N: int, h: int, w: int) -> None:
    """wi_att=uniform | query:J | shift:DX,DY into the experiment, or a note."""
    kind, _, arg = raw.partition(":")
    try:
        if kind == "uniform" and not arg:
            exp["att"] = "uniform"
            return
        if kind == "query" and 0 <= int(arg) < N:
            exp["att"], exp["att_q"] = "query", int(arg)
            return
        if kind == "shift":
            dx, dy = _ints(arg)
            if abs(dx) < w and abs(dy) < h:
                exp["att"], exp["dx"], exp["dy"] = "shift", dx, dy
                return
    except ValueError:
        pass
    notes.append(f"The link's `wi_att={raw}` is not understood (uniform, query:J with J 0..{N - 1}, or "
                 f"shift:DX,DY with |DX| < {w} and |DY| < {h}); the maps are used as traced.")


def to_params(exp: dict) -> dict:
    """The experiment as wi_* parameters (only what differs from the defaults)."""
    p = {}
    if exp["q"] is not None:
        p["wi_q"] = str(exp["q"])
    if exp["heads"]:
        p["wi_heads"] = ",".join(map(str, exp["heads"]))
    if exp["renorm"]:
        p["wi_renorm"] = "1"
    if exp["att"] == "uniform":
        p["wi_att"] = "uniform"
    elif exp["att"] == "query":
        p["wi_att"] = f"query:{exp['att_q']}"
    elif exp["att"] == "shift":
        p["wi_att"] = f"shift:{int(exp['dx'])},{int(exp['dy'])}"
    if exp["only"] != "both":
        p["wi_only"] = exp["only"]
    if exp["skips"]:
        p["wi_skips"] = ",".join(exp["skips"])
    if exp["drop"]:
        p["wi_drop"] = ",".join(map(str, exp["drop"]))
    if not exp["stuff"]:
        p["wi_stuff"] = "0"
    if not exp["small"]:
        p["wi_small"] = "0"
    if exp["thr"] is not None:
        p["wi_thr"] = f"{float(exp['thr']):.2f}"
    if exp["box"]:
        p["wi_box"] = ",".join(map(str, exp["box"]))
    return p


def from_url(trace) -> None:
    """Read the URL's wi_* parameters into the experiment when they are new (a shared link): the
    lab's widgets then start from them. Notes about values that were not used are kept until Reset."""
    ss = st.session_state
    params = {k: st.query_params[k] for k in st.query_params if k.startswith("wi_")}
    if not params or params == ss.get(URL_SEEN):
        return
    exp, notes = parse(params, trace)
    ss[EXP] = exp
    for key in [k for k in ss if isinstance(k, str) and k.startswith("wi_w_")]:
        del ss[key]
    ss[NOTES] = notes
    ss[URL_SEEN] = params


def to_url() -> None:
    """Write the experiment into the address bar (wi_* only; other parameters stay)."""
    params = to_params(experiment())
    for key in [k for k in st.query_params if k.startswith("wi_") and k not in params]:
        del st.query_params[key]
    changed = {k: v for k, v in params.items() if st.query_params.get(k) != v}
    if changed:
        st.query_params.update(changed)
    st.session_state[URL_SEEN] = params
