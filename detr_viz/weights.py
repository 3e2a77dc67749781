"""Model weights: a registry of the checkpoints the app knows, and getting their files safely.

Where a model's file comes from (`fetch`, first match wins):

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
the file would have to go, and what else a teacher can do (copy the file by hand, point
DETR_VIZ_CHECKPOINT / --checkpoint at it, or use the offline `toyworld` model).
"""
from __future__ import annotations

import argparse
import hashlib
import http.client
import os
import pickle
import re
import socket
import sys
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import torch

from .config import R50_DC5_PANOPTIC, R50_PANOPTIC, R101_PANOPTIC, DETRConfig
from .toyworld.config import TOYWORLD_CONFIG

ENV_VAR = "DETR_VIZ_CHECKPOINT"
REPO_ROOT = Path(__file__).resolve().parents[1]
# torch hub's rule for the hash in a file name ("detr-r50-panoptic-00ce5173.pth" -> "00ce5173");
# we ask for at least 6 hex digits so that names like "model-a.pth" do not count as hashed.
HASH_IN_NAME = re.compile(r"-([a-f0-9]{6,64})\.")
CHUNK = 256 * 1024

Progress = Callable[[int, Optional[int]], None]   # progress(done_bytes, total_bytes_or_None)


# ---- registry ------------------------------------------------------------------------------
@dataclass(frozen=True)
class WeightsEntry:
    """One model the app can load: its architecture, where its weights live, how good it is."""

    name: str
    config: DETRConfig
    url: str | None                       # None: not downloadable (shipped with the repo)
    file_name: str
    sha256_prefix: str                    # "" = unknown / read from `<local_path>.sha256`
    size_bytes: int | None                # approximate download size (None = unknown)
    metrics: dict = field(default_factory=dict, hash=False, compare=False)   # e.g. {"PQ": 43.4}
    description: str = ""
    local_path: Path | None = None        # a file shipped inside the repository

    @property
    def cache_path(self) -> Path:
        """Where torch hub (and `fetch`) keep the downloaded file."""
        return cache_dir() / self.file_name

    @property
    def expected_sha256(self) -> str:
        """The hash prefix to check, or "" if there is none.

        An empty `sha256_prefix` is taken from the first token of `<local_path>.sha256`, a file
        the toy-world trainer writes next to the checkpoint it ships.
        """
        if self.sha256_prefix or self.local_path is None:
            return self.sha256_prefix.lower()
        sidecar = self.local_path.with_name(self.local_path.name + ".sha256")
        try:
            tokens = sidecar.read_text().split()
        except OSError:
            return ""
        return tokens[0].lower() if tokens else ""

    def offline_path(self) -> Path | None:
        """The file `fetch` would use without the network (hashes not checked), or None."""
        try:
            found = _override_file(self, os.environ.get(ENV_VAR) or None)
        except WeightsUnavailable:
            found = None
        if found is not None:
            return found
        if self.local_path is not None and self.local_path.is_file():
            return self.local_path
        if self.cache_path.is_file():
            return self.cache_path
        return None

    def available_offline(self) -> bool:
        """True if the weights are on this machine already (no download needed)."""
        return self.offline_path() is not None


# Approximate sizes: the README's 165 MB / 165 MB / 237 MB (float32 state dicts of 43.0 M and
# 62.0 M elements); only used to tell the user how big the download is.
MODELS: dict[str, WeightsEntry] = {
    "detr-r50-panoptic": WeightsEntry(
        name="detr-r50-panoptic",
        config=R50_PANOPTIC,
        url="https://dl.fbaipublicfiles.com/detr/detr-r50-panoptic-00ce5173.pth",
        file_name="detr-r50-panoptic-00ce5173.pth",
        sha256_prefix="00ce5173",
        size_bytes=172_000_000,
        metrics={"PQ": 43.4},
        description="DETR ResNet-50, COCO panoptic (official checkpoint, PQ 43.4)",
    ),
    "detr-r50-dc5-panoptic": WeightsEntry(
        name="detr-r50-dc5-panoptic",
        config=R50_DC5_PANOPTIC,
        url="https://dl.fbaipublicfiles.com/detr/detr-r50-dc5-panoptic-da08f1b1.pth",
        file_name="detr-r50-dc5-panoptic-da08f1b1.pth",
        sha256_prefix="da08f1b1",
        size_bytes=172_000_000,
        metrics={"PQ": 44.6},
        description="DETR ResNet-50 with dilated C5 (stride 16), COCO panoptic (official, PQ 44.6)",
    ),
    "detr-r101-panoptic": WeightsEntry(
        name="detr-r101-panoptic",
        config=R101_PANOPTIC,
        url="https://dl.fbaipublicfiles.com/detr/detr-r101-panoptic-40021d53.pth",
        file_name="detr-r101-panoptic-40021d53.pth",
        sha256_prefix="40021d53",
        size_bytes=248_200_000,
        metrics={"PQ": 45.1},
        description="DETR ResNet-101, COCO panoptic (official checkpoint, PQ 45.1)",
    ),
}

# The shipped toy-world model (scripts/train_toyworld.py; model card in the README). The file's own
# config wins when loading; TOYWORLD_CONFIG (defined once, in detr_viz.toyworld.config) lets the app
# describe the model before loading it.

MODELS["toyworld"] = WeightsEntry(
    name="toyworld",
    config=TOYWORLD_CONFIG,
    url=None,
    file_name="toyworld.pt",
    # A retrained file ships with assets/models/toyworld.pt.sha256; update this prefix with it.
    sha256_prefix="eae3b35269b45362",
    size_bytes=24_857_830,
    metrics={"PQ": 84.3, "PQ_things": 73.7, "PQ_stuff": 95.0},
    description="ResNet-18 DC5 DETR trained 84 min on CPU on synthetic toy-world scenes; works offline",
    local_path=REPO_ROOT / "assets" / "models" / "toyworld.pt",
)


def get_entry(name: str) -> WeightsEntry:
    try:
        return MODELS[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; choose one of {sorted(MODELS)}") from None


# ---- errors ------------------------------------------------------------------------------
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


def _alternatives(dest: Path | None, offline_model: bool = True) -> str:
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


def _download_error(reason: str, url: str, dest: Path, cls=WeightsUnavailable, **kw):
    msg = (f"Could not download the model weights: {reason}.\n    URL: {url}\n"
           f"{_alternatives(dest)}")
    return cls(msg, reason=reason, url=url, path=dest, **kw)


# ---- files and hashes -----------------------------------------------------------------------
def cache_dir() -> Path:
    """`<torch hub dir>/checkpoints`, as torch hub uses (torch.hub.set_dir / $TORCH_HOME/hub)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


_DIGESTS: dict[tuple, str] = {}   # (path, inode, size, mtime_ns) -> hex digest


def _file_key(path: Path) -> tuple:
    st = path.stat()
    return (str(path.resolve()), st.st_ino, st.st_size, st.st_mtime_ns)


def sha256_file(path) -> str:
    """Hex SHA-256 of a file (remembered per path/inode/size/mtime: big files are hashed once)."""
    path = Path(path)
    key = _file_key(path)
    if key not in _DIGESTS:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        _DIGESTS[key] = h.hexdigest()
    return _DIGESTS[key]


def verify_file(path, prefix: str) -> bool:
    """True if the file's SHA-256 starts with `prefix` (an empty prefix always passes)."""
    return not prefix or sha256_file(path).startswith(prefix.lower())


def _hash_from_name(file_name: str) -> str:
    m = HASH_IN_NAME.search(Path(file_name).name)
    return m.group(1) if m else ""


# ---- download ---------------------------------------------------------------------------------
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
        raise WeightsUnavailable(f"Cannot create the folder {dest.parent}: {e}.\n{_alternatives(None)}",
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
                    f"Cannot write to {dest.parent} ({e}).\n{_alternatives(dest)}",
                    reason="cannot write file", url=url, path=dest) from e
            digest, done = _stream(resp, fd, url, dest, total, progress)
        if total is not None and done != total:
            raise _download_error(f"the download was cut off (truncated): got {done:,} of "
                                  f"{total:,} bytes", url, dest)
        if done == 0:
            raise _download_error("the server sent an empty file", url, dest)
        if sha256_prefix and not digest.startswith(sha256_prefix.lower()):
            raise _download_error(
                f"the downloaded file is corrupt: its SHA-256 is {digest}, expected it to start "
                f"with {sha256_prefix}", url, dest, cls=ChecksumMismatch,
                expected=sha256_prefix.lower(), got=digest)
        os.replace(tmp, dest)
        tmp = None
        _DIGESTS[_file_key(dest)] = digest
        return dest
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        close = getattr(progress, "close", None)
        if callable(close):
            close()


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
                    f"{_alternatives(dest)}", reason="cannot write file", url=url, path=dest) from e
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


# ---- resolution ---------------------------------------------------------------------------------
def _hinted_model(file_name: str) -> str:
    """The downloadable model a checkpoint file stands for, from its name: "dc5" -> R50-DC5,
    "101" -> R101, anything else -> R50."""
    name = file_name.lower()
    if "dc5" in name:
        return "detr-r50-dc5-panoptic"
    if "101" in name:
        return "detr-r101-panoptic"
    return "detr-r50-panoptic"


def _override_file(entry: WeightsEntry, override, explicit: bool = False) -> Path | None:
    """The file an explicit path / DETR_VIZ_CHECKPOINT gives for this entry, or None.

    An explicit file is always used. A file from the environment variable named like a
    registry file (e.g. detr-r101-panoptic-40021d53.pth) stands for that model only; any other
    file name stands for one downloadable model, picked by its name ("dc5" -> R50-DC5, "101" ->
    R101, else R50), never for one shipped in the repository (so the offline `toyworld` model
    keeps working while the variable is set). A folder is searched for the entry's file name.
    """
    if not override:
        return None
    p = Path(override).expanduser()
    if p.is_file():
        if explicit or p.name == entry.file_name:
            return p
        registry_names = {e.file_name for e in MODELS.values()}
        if entry.url is None or p.name in registry_names:
            return None
        return p if _hinted_model(p.name) == entry.name else None
    if p.is_dir():
        candidate = p / entry.file_name
        return candidate if candidate.is_file() else None
    raise WeightsUnavailable(
        f"The checkpoint path {p} (from --checkpoint or {ENV_VAR}) does not exist.\n"
        f"{_alternatives(entry.cache_path if entry.url else None)}",
        reason="checkpoint path does not exist", url=entry.url, path=p)


def _prefix_for(entry: WeightsEntry, path: Path) -> str:
    """The hash a user-supplied file must have: the entry's if it carries the registry name,
    else the one in its own `-<hex>.` name (torch hub style), else none."""
    if path.name == entry.file_name:
        return entry.expected_sha256
    return _hash_from_name(path.name)


def _check(path: Path, prefix: str, what: str, url: str | None = None,
           dest: Path | None = None) -> Path:
    """Return `path` if its SHA-256 starts with `prefix`, else raise ChecksumMismatch."""
    if verify_file(path, prefix):
        return path
    got = sha256_file(path)
    raise ChecksumMismatch(
        f"The {what} {path} is corrupt or not the right file: its SHA-256 is {got}, expected it "
        f"to start with {prefix}. Delete or replace it.\n{_alternatives(dest)}",
        reason="hash mismatch", url=url, path=path, expected=prefix, got=got)


def fetch(name: str, progress: Progress | None = None, checkpoint=None) -> Path:
    """Path of the verified weights file of registry model `name` (downloading if needed)."""
    return fetch_entry(get_entry(name), progress=progress, checkpoint=checkpoint)


def fetch_entry(entry: WeightsEntry, progress: Progress | None = None, checkpoint=None,
                timeout: float = 30.0) -> Path:
    """Like `fetch`, for an entry object (tests pass `dataclasses.replace(entry, url=...)`).

    `checkpoint` (the --checkpoint flag) takes precedence over $DETR_VIZ_CHECKPOINT.
    """
    dest = entry.cache_path if entry.url else None
    if checkpoint:
        found = _override_file(entry, checkpoint, explicit=True)
    else:
        found = _override_file(entry, os.environ.get(ENV_VAR) or None)
    if found is not None:
        return _check(found, _prefix_for(entry, found), "checkpoint file", entry.url, dest)

    if entry.local_path is not None and entry.local_path.is_file():
        return _check(entry.local_path, entry.expected_sha256, "model file")

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
            f"{_alternatives(None, offline_model=False)}",
            reason="model file missing", url=None, path=where)
    try:
        return download(entry.url, cached, entry.expected_sha256, progress=progress, timeout=timeout)
    except WeightsUnavailable as e:
        if corrupt_note:
            e.args = (corrupt_note + str(e),)
        raise


# ---- loading -------------------------------------------------------------------------------------
def load_checkpoint(path, sha256_prefix: str | None = None) -> tuple[dict, dict | None]:
    """Read a checkpoint safely (`weights_only=True`): returns (state_dict, config dict or None).

    Accepts `{"model": state_dict, ...}` (official files; a pickled `argparse.Namespace` under
    "args" is allowed) or a bare state dict. Half-precision tensors become float32.
    """
    path = Path(path)
    if sha256_prefix:
        _check(path, sha256_prefix, "checkpoint file")
    ckpt = _torch_load(path)
    if isinstance(ckpt, dict) and isinstance(ckpt.get("model"), dict):
        sd = ckpt["model"]
    elif isinstance(ckpt, dict) and isinstance(ckpt.get("state_dict"), dict):
        sd = ckpt["state_dict"]
    elif isinstance(ckpt, dict) and ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        sd = ckpt
    else:
        raise WeightsUnavailable(
            f"{path} is a PyTorch file but holds no model weights (expected a state dict or a "
            f"dict with a 'model' entry).", reason="not a checkpoint", path=path)
    sd = {k: _to_float32(v) for k, v in sd.items()}
    config = ckpt.get("config") if isinstance(ckpt.get("config"), dict) else None
    return sd, config


def _torch_load(path: Path):
    # argparse.Namespace is allowed from the start (not on a retry), so a 165 MB file is read once.
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as e:
        raise WeightsUnavailable(f"The checkpoint file {path} does not exist.",
                                 reason="file missing", path=path) from e
    except pickle.UnpicklingError as e:
        if "Unsupported global" in str(e):
            detail = re.search(r"GLOBAL (\S+)", str(e))
            raise WeightsUnavailable(
                f"{path} contains Python objects other than tensors"
                f"{f' ({detail.group(1)})' if detail else ''}, so it was not loaded: only plain "
                f"checkpoints are accepted, for safety.", reason="unsafe checkpoint", path=path) from e
        raise _not_a_checkpoint(path, e) from e
    except Exception as e:                                 # noqa: BLE001 - any decoding failure
        raise _not_a_checkpoint(path, e) from e


def _not_a_checkpoint(path: Path, err: Exception) -> WeightsUnavailable:
    first = str(err).splitlines()[0] if str(err) else type(err).__name__
    return WeightsUnavailable(
        f"{path} is not a PyTorch checkpoint, or the file is damaged (e.g. an incomplete "
        f"download). Details: {first}", reason="not a checkpoint", path=path)


def _to_float32(v):
    if isinstance(v, torch.Tensor) and v.dtype in (torch.float16, torch.bfloat16, torch.float64):
        return v.float()
    return v


# ---- architecture from a state dict -------------------------------------------------------------
def _block_count(keys, prefix: str, layer: str) -> int:
    pat = re.compile(re.escape(prefix + f"backbone.0.body.{layer}.") + r"(\d+)\.")
    return len({m.group(1) for k in keys if (m := pat.match(k))})


def _layer_count(keys, prefix: str, part: str) -> int:
    pat = re.compile(re.escape(prefix + f"transformer.{part}.layers.") + r"(\d+)\.")
    return len({m.group(1) for k in keys if (m := pat.match(k))})


def infer_config(state_dict: dict, file_name: str = "", base: DETRConfig | None = None) -> DETRConfig:
    """The DETRConfig that matches a state dict's keys and shapes (official layout).

    Dilation cannot be seen in the weights: it is taken from "dc5" in `file_name`. Fields that
    the weights do not determine (threshold, categories, bbox_attention_scale, ...) come from
    `base` (default DETRConfig()).
    """
    base = base or DETRConfig()
    keys = list(state_dict)
    what = file_name or "this checkpoint"
    cls_key = next((k for k in keys if k.endswith("class_embed.weight")), None)
    if cls_key is None:
        raise WeightsUnavailable(f"{what} is not a DETR checkpoint (no class_embed.weight).",
                                 reason="not a DETR checkpoint")
    prefix = cls_key[: -len("class_embed.weight")]        # "detr." for panoptic checkpoints
    if not any(k.endswith("bbox_attention.q_linear.weight") for k in keys):
        raise WeightsUnavailable(
            f"{what} is a detection-only DETR checkpoint (no box-attention / mask head), so it "
            "cannot make panoptic masks. Use a panoptic checkpoint such as "
            f"{MODELS['detr-r50-panoptic'].file_name} from {MODELS['detr-r50-panoptic'].url}.",
            reason="detection-only checkpoint")
    try:
        num_cls, hidden_dim = state_dict[cls_key].shape
        num_queries = state_dict[prefix + "query_embed.weight"].shape[0]
        enc, dec = _layer_count(keys, prefix, "encoder"), _layer_count(keys, prefix, "decoder")
        part = "encoder" if enc else "decoder"
        ffn = state_dict[prefix + f"transformer.{part}.layers.0.linear1.weight"].shape[0]
        lay1 = next((k for k in keys if k.endswith("mask_head.lay1.weight")), None)
        nheads = state_dict[lay1].shape[0] - hidden_dim if lay1 else base.nheads
        bottleneck = (prefix + "backbone.0.body.layer1.0.conv3.weight") in state_dict
    except (KeyError, ValueError, AttributeError) as e:
        raise WeightsUnavailable(f"{what} does not have the layout of a DETR panoptic checkpoint "
                                 f"(missing or odd entry {e}).", reason="not a DETR checkpoint") from e
    blocks3 = _block_count(keys, prefix, "layer3")
    names = {True: {6: "resnet50", 23: "resnet101", 36: "resnet152"},
             False: {2: "resnet18", 6: "resnet34"}}[bottleneck]
    if blocks3 not in names:
        raise WeightsUnavailable(
            f"Cannot tell the backbone of {what}: layer3 has {blocks3} "
            f"{'bottleneck' if bottleneck else 'basic'} blocks.", reason="unknown backbone")
    return base.replace(
        backbone=names[blocks3], dilation="dc5" in Path(file_name).name.lower() or base.dilation,
        hidden_dim=int(hidden_dim), nheads=int(nheads), enc_layers=enc, dec_layers=dec,
        dim_feedforward=int(ffn), num_queries=int(num_queries), num_classes=int(num_cls) - 1)
