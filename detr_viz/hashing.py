"""SHA-256 of files (placeholder in the toyworld branch: helper A's `detr_viz/hashing.py` replaces it)."""
from __future__ import annotations

import hashlib
from pathlib import Path


def sha256_file(path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(Path(path), "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
