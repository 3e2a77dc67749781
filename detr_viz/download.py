"""Getting a registry model's file: an explicit path, the shipped file, the torch hub cache, or a download.

Where a model's file comes from (`resolve`, first match wins):

1. an explicit path (`--checkpoint` flag, passed as `checkpoint=`), else the `DETR_VIZ_CHECKPOINT`
   environment variable: a checkpoint file, or a folder searched for the registry file name.
   A file named like a registry file stands for that model only, any other name for the
   downloadable (official) models; a file named `...-<hex>.pth` must match that hash;
2. a model shipped inside the repository (`entry.local_path`, the offline `toyworld` model);
3. the torch hub cache, `<torch hub dir>/checkpoints/<file name>` (the same file
   `torch.hub.load_state_dict_from_url` would use; its hash is checked here, which torch hub
   itself never does for a cached file);
4. a download from `entry.url`, streamed into a temporary file next to the cache file while its
   SHA-256 is computed, then checked and renamed into place (never a half-written file in the cache).

Everything that can go wrong ends in `WeightsUnavailable`, whose message says what failed, where
the file would have to go, and what else a teacher can do. This module knows entries only through
their attributes (name, url, file_name, config, local_path, cache_path, expected_sha256); the
registry (`detr_viz.registry`) passes its table in.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import socket
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path

import torch

from .errors import ENV_VAR, ChecksumMismatch, WeightsUnavailable, alternatives
from .hashing import check_file, hash_from_name, remember_digest, sha256_file, verify_file

CHUNK = 256 * 1024
Progress = Callable[[int, int | None], None]   # progress(done_bytes, total_bytes_or_None)


def cache_dir() -> Path:
    """`<torch hub dir>/checkpoints`, as torch hub uses (torch.hub.set_dir / $TORCH_HOME/hub)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


# ---- download ---------------------------------------------------------------------------------
def _download_error(reason: str, url: str, dest: Path, cls=WeightsUnavailable, **kw):
    msg = (f"Could not download the model weights: {reason}.\n    URL: {url}\n"
           f"{alternatives(dest)}")
    return cls(msg, reason=reason, url=url, path=dest, **kw)


def _open_url(url: str, dest: Path, timeout: float):
    """urlopen with every network failure turned into WeightsUnavailable."""
    req = urllib.request.Request(url, headers={"User-Agent": "detr-viz"})
    try:
        return urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as e:
        raise _download_error(f"the server answered HTTP {e.code} {e.reason}", url, dest) from e
    except urllib.error.URLError as e:
        raise _download_error(_network_reason(e.reason), url, dest) from e
    except (OSError, http.client.HTTPException, ValueError) as e:
        raise _download_error(_network_reason(e), url, dest) from e


def _network_reason(err) -> str:
    if isinstance(err, socket.gaierror):
        return f"no network connection (cannot resolve the server name: {err})"
    if isinstance(err, (socket.timeout, TimeoutError)):
        return "no network connection (the connection timed out)"
    if isinstance(err, ConnectionRefusedError):
        return "no network connection (connection refused)"
    if isinstance(err, ConnectionError):
        return f"no network connection ({err})"
    return f"network error ({err})"


def download(url: str, dest, sha256_prefix: str, progress: Progress | None = None,
             timeout: float = 30.0) -> Path:
    """Download `url` to `dest`, checking its length and SHA-256 prefix; returns `dest`.

    The data goes to a temporary file in dest's folder and is renamed into place only when
    complete and verified. `progress(done_bytes, total_bytes_or_None)` is called at the start
    and after every chunk; if it has a `close()` method, that is called at the end.
    """
    dest = Path(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise WeightsUnavailable(f"Cannot create the folder {dest.parent}: {e}.\n{alternatives(None)}",
                                 reason="cannot create cache folder", url=url, path=dest) from e
    tmp = None
    try:
        with _open_url(url, dest, timeout) as resp:
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            try:
                fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=dest.name + ".", suffix=".partial")
            except OSError as e:
                raise WeightsUnavailable(
                    f"Cannot write to {dest.parent} ({e}).\n{alternatives(dest)}",
                    reason="cannot write file", url=url, path=dest) from e
            digest, done = _stream(resp, fd, url, dest, total, progress)
        _check_download(url, dest, sha256_prefix, digest, done, total)
        os.replace(tmp, dest)
        tmp = None
        remember_digest(dest, digest)
        return dest
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        close = getattr(progress, "close", None)
        if callable(close):
            close()


def _check_download(url: str, dest: Path, prefix: str, digest: str, done: int, total) -> None:
    if total is not None and done != total:
        raise _download_error(f"the download was cut off (truncated): got {done:,} of "
                              f"{total:,} bytes", url, dest)
    if done == 0:
        raise _download_error("the server sent an empty file", url, dest)
    if prefix and not digest.startswith(prefix.lower()):
        raise _download_error(
            f"the downloaded file is corrupt: its SHA-256 is {digest}, expected it to start "
            f"with {prefix}", url, dest, cls=ChecksumMismatch, expected=prefix.lower(), got=digest)


def _stream(resp, fd: int, url: str, dest: Path, total, progress):
    """Copy the response body into the open file `fd`; returns (hex digest, bytes done)."""
    h = hashlib.sha256()
    done = 0
    with os.fdopen(fd, "wb") as out:
        if progress:
            progress(0, total)
        while True:
            try:
                chunk = resp.read(CHUNK)
            except http.client.IncompleteRead as e:      # connection closed early
                chunk = e.partial
                if chunk:
                    h.update(chunk)
                    out.write(chunk)
                    done += len(chunk)
                break
            except (OSError, http.client.HTTPException) as e:
                raise _download_error(f"the connection broke after {done:,} bytes "
                                      f"({_network_reason(e)})", url, dest) from e
            if not chunk:
                break
            h.update(chunk)
            try:
                out.write(chunk)
            except OSError as e:
                raise WeightsUnavailable(
                    f"Cannot write the download to {dest.parent} ({e}); is the disk full?\n"
                    f"{alternatives(dest)}", reason="cannot write file", url=url, path=dest) from e
            done += len(chunk)
            if progress:
                progress(done, total)
    return h.hexdigest(), done


class _TqdmProgress:
    """A progress callback drawing a tqdm bar on stderr; `close()` ends the bar."""

    def __init__(self, desc: str):
        from tqdm import tqdm
        self.bar = tqdm(desc=desc, total=None, unit="B", unit_scale=True, unit_divisor=1024,
                        file=sys.stderr, leave=True)

    def __call__(self, done: int, total: int | None) -> None:
        if self.bar is None:
            return
        if total is not None and self.bar.total != total:
            self.bar.total = total
            self.bar.refresh()
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def terminal_progress(desc: str) -> _TqdmProgress:
    """A `progress(done, total)` callback that draws a download bar on stderr."""
    return _TqdmProgress(desc)


# ---- which file stands for an entry ------------------------------------------------------------
def _name_hints(file_name: str, entry) -> bool:
    """True if a foreign file name stands for this downloadable entry: "dc5" -> R50-DC5,
    "101" -> R101, anything else -> R50 (compared with the entry's config)."""
    name = file_name.lower()
    dc5 = "dc5" in name
    backbone = "resnet101" if "101" in name and not dc5 else "resnet50"
    return (entry.config.backbone, entry.config.dilation) == (backbone, dc5)


def override_file(entry, entries: Iterable, override, explicit: bool = False) -> Path | None:
    """The file an explicit path / DETR_VIZ_CHECKPOINT gives for this entry, or None.

    An explicit file is always used. A file from the environment variable named like a
    registry file (one of `entries`, e.g. detr-r101-panoptic-40021d53.pth) stands for that model
    only; any other file name stands for one downloadable model, picked by its name ("dc5" ->
    R50-DC5, "101" -> R101, else R50), never for one shipped in the repository (so the offline
    `toyworld` model keeps working while the variable is set). A folder is searched for the
    entry's file name.
    """
    if not override:
        return None
    p = Path(override).expanduser()
    if p.is_file():
        if explicit or p.name == entry.file_name:
            return p
        if entry.url is None or p.name in {e.file_name for e in entries}:
            return None
        return p if _name_hints(p.name, entry) else None
    if p.is_dir():
        candidate = p / entry.file_name
        return candidate if candidate.is_file() else None
    raise WeightsUnavailable(
        f"The checkpoint path {p} (from --checkpoint or {ENV_VAR}) does not exist.\n"
        f"{alternatives(entry.cache_path if entry.url else None)}",
        reason="checkpoint path does not exist", url=entry.url, path=p)


def offline_path(entry, entries: Iterable) -> Path | None:
    """The file `resolve` would use without the network (hashes not checked), or None."""
    try:
        found = override_file(entry, entries, os.environ.get(ENV_VAR) or None)
    except WeightsUnavailable:
        found = None
    if found is not None:
        return found
    if entry.local_path is not None and entry.local_path.is_file():
        return entry.local_path
    if entry.cache_path.is_file():
        return entry.cache_path
    return None


def _prefix_for(entry, path: Path) -> str:
    """The hash a user-supplied file must have: the entry's if it carries the registry name,
    else the one in its own `-<hex>.` name (torch hub style), else none."""
    if path.name == entry.file_name:
        return entry.expected_sha256
    return hash_from_name(path.name)


def resolve(entry, entries: Iterable, progress: Progress | None = None, checkpoint=None,
            timeout: float = 30.0) -> Path:
    """Path of the verified weights file of `entry` (downloading if needed); see the module doc.

    `checkpoint` (the --checkpoint flag) takes precedence over $DETR_VIZ_CHECKPOINT.
    """
    dest = entry.cache_path if entry.url else None
    override = checkpoint or os.environ.get(ENV_VAR) or None
    found = override_file(entry, entries, override, explicit=bool(checkpoint))
    if found is not None:
        return check_file(found, _prefix_for(entry, found), "checkpoint file", alternatives(dest), entry.url)
    if entry.local_path is not None and entry.local_path.is_file():
        return check_file(entry.local_path, entry.expected_sha256, "model file", alternatives(None))
    cached = entry.cache_path
    corrupt_note = ""
    if cached.is_file():
        if verify_file(cached, entry.expected_sha256):
            return cached
        corrupt_note = (f"The cached file {cached} is corrupt (SHA-256 {sha256_file(cached)}, "
                        f"expected it to start with {entry.expected_sha256}); it was not used.\n")
    if entry.url is None:
        where = entry.local_path or cached
        raise WeightsUnavailable(
            f"{corrupt_note}The model file of {entry.name!r} is missing: expected it at {where}. "
            f"It cannot be downloaded; it ships with the repository (check that the repository "
            f"is complete) or is made by the toy-world training script.\n"
            f"{alternatives(None, offline_model=False)}",
            reason="model file missing", url=None, path=where)
    try:
        return download(entry.url, cached, entry.expected_sha256, progress=progress, timeout=timeout)
    except WeightsUnavailable as e:
        if corrupt_note:
            e.args = (corrupt_note + str(e),)
        raise
