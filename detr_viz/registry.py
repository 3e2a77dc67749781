"""The registry: the models the app knows, as a table (like torchvision's `_api.py`).

Each official checkpoint is written once, as its URL: the file name is the URL's last part and
the SHA-256 prefix is the hash in that name (torch hub's rule). `fetch(name)` gets a model's
verified file (see `detr_viz.download` for where it comes from).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .config import R50_DC5_PANOPTIC, R50_PANOPTIC, R101_PANOPTIC, DETRConfig
from .download import Progress, cache_dir, offline_path, resolve
from .errors import ENV_VAR
from .hashing import hash_from_name
from .toyworld.config import TOYWORLD_CONFIG

REPO_ROOT = Path(__file__).resolve().parents[1]
OFFICIAL_URL = "https://dl.fbaipublicfiles.com/detr/"


@dataclass(frozen=True)
class WeightsEntry:
    """One model the app can load: its architecture, where its weights live, how good it is.

    `file_name` defaults to the URL's last part and `sha256_prefix` to the hash in the file name.
    """

    name: str
    config: DETRConfig
    url: str | None                       # None: not downloadable (shipped with the repo)
    file_name: str = ""
    sha256_prefix: str = ""               # "" = unknown / read from `<local_path>.sha256`
    size_bytes: int | None = None         # approximate download size (None = unknown)
    metrics: dict = field(default_factory=dict, hash=False, compare=False)   # e.g. {"PQ": 43.4}
    description: str = ""
    local_path: Path | None = None        # a file shipped inside the repository

    def __post_init__(self):
        if not self.file_name and self.url:
            object.__setattr__(self, "file_name", self.url.rsplit("/", 1)[-1])
        if not self.sha256_prefix:
            object.__setattr__(self, "sha256_prefix", hash_from_name(self.file_name))

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
        return offline_path(self, MODELS.values())

    def available_offline(self) -> bool:
        """True if the weights are on this machine already (no download needed)."""
        return self.offline_path() is not None


# Approximate sizes: the README's 165 MB / 165 MB / 237 MB (float32 state dicts of 43.0 M and
# 62.0 M elements); only used to tell the user how big the download is.
_OFFICIAL = [
    ("detr-r50-panoptic", R50_PANOPTIC, "detr-r50-panoptic-00ce5173.pth", 172_000_000, {"PQ": 43.4},
     "DETR ResNet-50, COCO panoptic (official checkpoint, PQ 43.4)"),
    ("detr-r50-dc5-panoptic", R50_DC5_PANOPTIC, "detr-r50-dc5-panoptic-da08f1b1.pth", 172_000_000, {"PQ": 44.6},
     "DETR ResNet-50 with dilated C5 (stride 16), COCO panoptic (official, PQ 44.6)"),
    ("detr-r101-panoptic", R101_PANOPTIC, "detr-r101-panoptic-40021d53.pth", 248_200_000, {"PQ": 45.1},
     "DETR ResNet-101, COCO panoptic (official checkpoint, PQ 45.1)"),
]
MODELS: dict[str, WeightsEntry] = {
    name: WeightsEntry(name=name, config=cfg, url=OFFICIAL_URL + file, size_bytes=size, metrics=metrics,
                       description=desc)
    for name, cfg, file, size, metrics, desc in _OFFICIAL
}

# The shipped toy-world model (scripts/train_toyworld.py; model card in the README). Its config is
# written once, in detr_viz/toyworld/config.py; the file's own config wins when loading.
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


def fetch(name: str, progress: Progress | None = None, checkpoint=None) -> Path:
    """Path of the verified weights file of registry model `name` (downloading if needed)."""
    return fetch_entry(get_entry(name), progress=progress, checkpoint=checkpoint)


def fetch_entry(entry: WeightsEntry, progress: Progress | None = None, checkpoint=None,
                timeout: float = 30.0) -> Path:
    """Like `fetch`, for an entry object (tests pass `dataclasses.replace(entry, url=...)`)."""
    return resolve(entry, MODELS.values(), progress=progress, checkpoint=checkpoint, timeout=timeout)


__all__ = ["ENV_VAR", "MODELS", "REPO_ROOT", "TOYWORLD_CONFIG", "WeightsEntry", "fetch", "fetch_entry", "get_entry"]
