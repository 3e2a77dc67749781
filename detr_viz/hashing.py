"""SHA-256 of files, and the promise a hashed file name makes.

A file named like torch hub's checkpoints, `...-<hex>.pth` ("detr-r50-panoptic-00ce5173.pth"),
promises that its SHA-256 starts with that hex. `check_file` keeps the promise: every way a
checkpoint reaches the app (fetch, create_model, the CLI, the app) goes through it.
"""
from __future__ import annotations

import hashlib
import re
import threading
from pathlib import Path

from .errors import ChecksumMismatch

# torch hub's rule for the hash in a file name ("detr-r50-panoptic-00ce5173.pth" -> "00ce5173");
# we ask for at least 6 hex digits so that names like "model-a.pth" do not count as hashed.
HASH_IN_NAME = re.compile(r"-([a-f0-9]{6,64})\.")

_DIGESTS: dict[tuple, str] = {}   # file_key(path) -> hex digest
_LOCK = threading.Lock()


def file_key(path) -> tuple:
    """(path, inode, size, mtime_ns): changes whenever the file's bytes may have changed,
    including a rewrite in place with other bytes of the same size."""
    path = Path(path)
    st = path.stat()
    return (str(path.resolve()), st.st_ino, st.st_size, st.st_mtime_ns)


def sha256_file(path) -> str:
    """Hex SHA-256 of a file (remembered per path/inode/size/mtime: big files are hashed once)."""
    path = Path(path)
    key = file_key(path)
    with _LOCK:
        known = _DIGESTS.get(key)
    if known is not None:
        return known
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return remember_digest(path, h.hexdigest())


def remember_digest(path, digest: str) -> str:
    """Record a digest computed elsewhere (while downloading) for the file as it is now."""
    key = file_key(path)
    with _LOCK:
        _DIGESTS[key] = digest
    return digest


def verify_file(path, prefix: str) -> bool:
    """True if the file's SHA-256 starts with `prefix` (an empty prefix always passes)."""
    return not prefix or sha256_file(path).startswith(prefix.lower())


def hash_from_name(file_name) -> str:
    """The hash prefix a file name promises ("x-00ce5173.pth" -> "00ce5173"), or ""."""
    m = HASH_IN_NAME.search(Path(file_name).name)
    return m.group(1) if m else ""


def check_file(path, prefix: str | None = None, what: str = "checkpoint file", hint: str = "",
               url: str | None = None) -> Path:
    """Return `path` if its SHA-256 starts with `prefix`, else raise ChecksumMismatch.

    `prefix=None` means: the hash the file's own name promises (none: nothing to check).
    `hint` is appended to the error (what else the user can do).
    """
    path = Path(path)
    prefix = hash_from_name(path.name) if prefix is None else prefix.lower()
    if verify_file(path, prefix):
        return path
    got = sha256_file(path)
    source = "its name promises" if prefix == hash_from_name(path.name) else "it should start with"
    raise ChecksumMismatch(
        f"The {what} {path} is corrupt or not the right file: its SHA-256 starts with "
        f"{got[:len(prefix)]}, but {source} {prefix} (full SHA-256: {got}). Delete or replace it; "
        f"if it is a file of your own, give it a name without a -<hex>. part." + (f"\n{hint}" if hint else ""),
        reason="hash mismatch", url=url, path=path, expected=prefix, got=got)
