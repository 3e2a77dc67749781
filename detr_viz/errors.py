"""What can go wrong with model weights, and what a teacher can do about it.

Every failure to get or read a model file is a `WeightsUnavailable` (or its subclass
`ChecksumMismatch`), whose message says what failed and, via `alternatives`, what else to do.
"""
from __future__ import annotations

from pathlib import Path

# The environment variable naming a checkpoint file (or a folder holding it) on this machine.
ENV_VAR = "DETR_VIZ_CHECKPOINT"


class WeightsUnavailable(RuntimeError):
    """The weights of a model cannot be used: not downloadable, corrupt, or not a checkpoint.

    Attributes: `reason` (short, e.g. "no network connection"), `url`, `path` (where the file
    is or should be put).
    """

    def __init__(self, message: str, *, reason: str = "", url: str | None = None,
                 path: Path | None = None):
        super().__init__(message)
        self.reason = reason or message
        self.url = url
        self.path = path


class ChecksumMismatch(WeightsUnavailable):
    """A file's SHA-256 does not start with the expected prefix (corrupt or wrong file)."""

    def __init__(self, message: str, *, expected: str, got: str, **kw):
        super().__init__(message, **kw)
        self.expected = expected
        self.got = got


def alternatives(dest: Path | None, offline_model: bool = True) -> str:
    """What a teacher can do instead: where to copy the file, and the other ways to get weights."""
    lines = []
    if dest is not None:
        lines.append(f"To use this model without downloading, copy the file to:\n    {dest}")
    toy = ", or choose the offline 'toyworld' model, which ships with the app" if offline_model else ""
    lines.append(
        f"Alternatives: set the environment variable {ENV_VAR}=/path/to/checkpoint.pth (a file, or "
        f"a folder holding it), pass --checkpoint /path/to/checkpoint.pth (python -m detr_viz ... "
        f"--checkpoint, or streamlit run app.py -- --checkpoint){toy}.")
    return "\n".join(lines)
