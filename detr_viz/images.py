"""Reading user images safely, and DETR's official preprocessing.

`load_image(src)` accepts a path, raw bytes, a binary file object (e.g. Streamlit's
UploadedFile, read from its start), a PIL image or a numpy array (H x W gray, H x W x 3 RGB or
H x W x 4 RGBA; uint8 0..255 or float 0..1, as from matplotlib or skimage), and always returns
an RGB PIL image:

* EXIF orientation is applied (a phone photo taken upright shows upright);
* every colour mode becomes RGB: transparency is composited over WHITE, 16-bit images are
  scaled 0..65535 -> 0..255 (not clipped), float images are scaled to their range;
* of a multi-frame GIF / TIFF / WebP only the first frame is used;
* anything that cannot be read (empty, truncated, not an image) raises `ImageError`, whose
  message a student can act on; no raw PIL exception escapes.

Size limits (checked on the header, before any pixel is decoded):

* `MAX_PIXELS` = 50,000,000: larger images are refused (decompression-bomb protection: a tiny
  PNG can claim 30000 x 30000 pixels and need gigabytes once decoded). PIL's own bomb check
  (warning above ~89 MP, error above ~179 MP) is turned into the same `ImageError`; PIL's global
  limit is left unchanged so other code in the process is not affected.
* `MAX_SIDE` = 4096: images with a longer side are downscaled to it (aspect kept); JPEGs are
  decoded at reduced size with `Image.draft`, so a 48 MP photo never occupies full memory.

`preprocess(image)` is the official evaluation transform (datasets/coco.py, `val`):
`RandomResize([800], max_size=1333)`, `ToTensor`, ImageNet `Normalize`.
"""
from __future__ import annotations

import io
import math
import os
import re
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torchvision.transforms import functional as TF

MAX_PIXELS = 50_000_000
MAX_SIDE = 4096
MEAN = (0.485, 0.456, 0.406)     # ImageNet RGB mean and std: the only place these numbers are written
STD = (0.229, 0.224, 0.225)
FORMATS = "JPEG, PNG, WebP, BMP, TIFF or GIF"

_ALPHA_MODES = {"LA", "La", "PA", "RGBA", "RGBa"}
_PLAIN_MODES = {"1", "L", "P", "RGB", "CMYK", "YCbCr", "RGBX", "LAB", "HSV"}


class ImageError(ValueError):
    """The input cannot be used as an image; the message says why and what to do."""


# ---- loading ----------------------------------------------------------------------------------
def load_image(src) -> Image.Image:
    """Read `src` (path, bytes, binary file object, PIL image or numpy array) as an RGB PIL image."""
    if isinstance(src, Image.Image):
        data = src
    elif isinstance(src, np.ndarray):
        data = _from_array(src)
    else:
        data = _read_bytes(src)
    # PIL's warnings are silenced except the bomb warning, which becomes an error we convert.
    # (catch_warnings is process-wide; the worst a concurrent thread can see is a lost warning.)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            return _load(data)
        except ImageError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            m = re.search(r"\((\d+) pixels\)", str(e))
            size = f" ({int(m.group(1)) / 1e6:,.0f} megapixels)" if m else ""
            raise ImageError(f"The image is too large{size}; the limit is {MAX_PIXELS / 1e6:.0f} "
                             f"megapixels. Please upload a smaller image.") from e
        except MemoryError as e:
            raise ImageError("The image is too large to decode in memory. Please upload a "
                             "smaller image.") from e
        except Exception as e:                             # noqa: BLE001 - any decoder failure
            raise _unreadable(e) from e


def _unreadable(e: Exception) -> ImageError:
    text = str(e) or type(e).__name__
    if isinstance(e, EOFError) or "truncat" in text.lower() or "broken data stream" in text:
        return ImageError("The image file is incomplete (truncated): it may not have finished "
                          "uploading or downloading. Please upload it again or use another image.")
    return ImageError(f"This file is not an image we can read ({text}). Please upload a {FORMATS}.")


def _from_array(a: np.ndarray) -> Image.Image:
    """A numpy picture as a PIL image: (H, W), (H, W, 1), (H, W, 3) or (H, W, 4); uint8 as is,
    bool as black/white, other numbers as floats 0..1 (clipped)."""
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[-1] in (3, 4))) or 0 in a.shape:
        raise ImageError(f"An array of shape {tuple(a.shape)} is not a picture: give H x W, H x W x 3 "
                         "or H x W x 4 values.")
    if a.dtype == np.bool_:
        a = a.astype(np.uint8) * 255
    elif a.dtype != np.uint8:
        if not np.issubdtype(a.dtype, np.number) or np.iscomplexobj(a):
            raise ImageError(f"An array of {a.dtype} values is not a picture: give uint8 0..255 or floats 0..1.")
        a = (np.nan_to_num(np.clip(a.astype(np.float64), 0.0, 1.0)) * 255 + 0.5).astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(a))


def _read_bytes(src) -> bytes:
    """The raw bytes of a path, bytes-like or binary file object."""
    if isinstance(src, (str, os.PathLike)):
        try:
            with open(src, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            raise ImageError(f"Cannot find the image file {os.fspath(src)}.") from None
        except OSError as e:
            raise ImageError(f"Cannot read the image file {os.fspath(src)} ({e}).") from e
    elif isinstance(src, (bytes, bytearray, memoryview)):
        data = bytes(src)
    elif hasattr(src, "read"):
        if getattr(src, "seekable", lambda: False)():
            src.seek(0)                                    # Streamlit reruns re-read the upload
        data = src.read()
        if isinstance(data, str):
            raise TypeError("the file object was opened in text mode; open it with 'rb'")
    else:
        raise TypeError(f"cannot read an image from a {type(src).__name__}; give a path, bytes, "
                        f"a binary file object or a PIL image")
    if not data:
        raise ImageError(f"The image is empty (the file has 0 bytes). Please upload a {FORMATS}.")
    return data


def _load(src: Image.Image | bytes) -> Image.Image:
    if isinstance(src, Image.Image):
        im = src
    else:
        try:
            im = Image.open(io.BytesIO(src))               # lazy: reads the header only
        except UnidentifiedImageError as e:
            raise ImageError(f"This file is not an image we can read (unknown format). "
                             f"Please upload a {FORMATS}.") from e
    _check_size(*im.size)
    if im.tell() != 0:
        im.seek(0)                                         # first frame of an animation / stack
    _draft(im)
    im.load()                                              # decode (reduced, for big JPEGs)
    out = _exif_transpose(im)
    out = to_rgb(out)
    out = _limit_side(out)
    return out.copy() if out is src else out


def _check_size(w: int, h: int) -> None:
    if w <= 0 or h <= 0:
        raise ImageError(f"The image is empty ({w} x {h} pixels). Please upload a {FORMATS}.")
    if w * h > MAX_PIXELS:
        raise ImageError(f"The image is {w} x {h} pixels ({w * h / 1e6:,.0f} megapixels); the limit "
                         f"is {MAX_PIXELS / 1e6:.0f} megapixels. Please upload a smaller image "
                         f"(e.g. resized to {MAX_SIDE} pixels on the long side).")


def _draft(im: Image.Image) -> None:
    """Ask the JPEG decoder for a 1/2, 1/4 or 1/8 scale that still covers MAX_SIDE."""
    w, h = im.size
    if im.format == "JPEG" and max(w, h) > MAX_SIDE:
        s = MAX_SIDE / max(w, h)
        im.draft(None, (math.ceil(w * s), math.ceil(h * s)))


def _exif_transpose(im: Image.Image) -> Image.Image:
    try:
        return ImageOps.exif_transpose(im) or im
    except Exception:                                      # noqa: BLE001 - broken EXIF: keep pixels
        return im


def _limit_side(im: Image.Image) -> Image.Image:
    w, h = im.size
    if max(w, h) <= MAX_SIDE:
        return im
    s = MAX_SIDE / max(w, h)
    size = (MAX_SIDE, max(1, round(h * s))) if w >= h else (max(1, round(w * s)), MAX_SIDE)
    return im.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)


# ---- colour modes ------------------------------------------------------------------------------
def to_rgb(im: Image.Image) -> Image.Image:
    """Any PIL mode -> RGB (alpha over white; 16-bit and float images scaled, not clipped)."""
    mode = im.mode
    if mode == "RGB" and "transparency" not in im.info:
        return im
    if mode in _ALPHA_MODES or ("transparency" in im.info and mode in {"1", "L", "P", "RGB"}):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", im.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if mode.startswith("I") or mode == "F":
        return _gray_to_rgb(_scale_to_uint8(np.asarray(im), mode))
    if mode in _PLAIN_MODES:
        return im.convert("RGB")
    try:
        return im.convert("RGB")
    except Exception as e:                                 # noqa: BLE001
        raise ImageError(f"The image has a colour mode we cannot show ({mode}). "
                         f"Please upload a {FORMATS}.") from e


def _scale_to_uint8(a: np.ndarray, mode: str) -> np.ndarray:
    """16-bit -> /257 (65535 -> 255); "I" of 8-bit values kept; floats by their range."""
    a = np.nan_to_num(a.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
    if mode.startswith("I;16"):
        a = a / 257.0
    elif mode == "I" and lo >= 0 and hi <= 255:
        pass                                               # an 8-bit image stored as int32
    elif mode == "I" and lo >= 0 and hi <= 65535:
        a = a / 257.0
    elif mode == "F" and lo >= 0 and hi <= 1:
        a = a * 255.0
    elif mode == "F" and lo >= 0 and hi <= 255:
        pass
    else:                                                  # anything else: stretch min..max
        a = (a - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(a)
    return np.clip(np.rint(a), 0, 255).astype(np.uint8)


def _gray_to_rgb(g: np.ndarray) -> Image.Image:
    return Image.fromarray(np.repeat(g[:, :, None], 3, axis=2))   # (H, W) -> (H, W, 3)


# ---- preprocessing ------------------------------------------------------------------------------
def resized_size(w: int, h: int, size: int = 800, max_size: int | None = 1333) -> tuple[int, int]:
    """(oh, ow) of DETR's `get_size_with_aspect_ratio`: short side `size`, long side capped.

    If the long side would exceed `max_size`, the short side becomes round(max_size*short/long).
    The long side is truncated, int(size*long/short), as in the official code. An extreme strip
    (e.g. 4000 x 1, where the official code would make a 0-pixel side) becomes 1 x max_size.
    """
    if max_size is not None:
        short, long = float(min(w, h)), float(max(w, h))
        if long / short * size > max_size:
            size = int(round(max_size * short / long))
            if size < 1:
                return (1, max_size) if w > h else (max_size, 1)
    if (w <= h and w == size) or (h <= w and h == size):
        return h, w
    if w < h:
        return int(size * h / w), size
    return size, int(size * w / h)


@dataclass(eq=False)
class Preprocessed:
    """The network input and the sizes needed to map results back to the image."""

    tensor: torch.Tensor               # (1, 3, H, W) float32, ImageNet-normalised
    original_size: tuple[int, int]     # (h, w) of the loaded image
    processed_size: tuple[int, int]    # (H, W) of the network input
    resized_image: Image.Image         # the RGB image after the resize (W x H)


def preprocess(image: Image.Image, size: int = 800, max_size: int | None = 1333) -> Preprocessed:
    """The official evaluation transform: resize, to_tensor, normalise; adds the batch axis."""
    if image.mode != "RGB":
        image = to_rgb(image)
    w, h = image.size
    oh, ow = resized_size(w, h, size, max_size)
    resized = TF.resize(image, [oh, ow])                   # PIL bilinear (antialiased)
    x = normalize(TF.to_tensor(resized))                  # (3, H, W) float32
    return Preprocessed(tensor=x.unsqueeze(0),             # (1, 3, H, W)
                        original_size=(h, w), processed_size=(oh, ow), resized_image=resized)


def _mean_std() -> tuple[torch.Tensor, torch.Tensor]:
    """MEAN and STD as (3, 1, 1) tensors."""
    return torch.tensor(MEAN).view(3, 1, 1), torch.tensor(STD).view(3, 1, 1)


def normalize(x: torch.Tensor) -> torch.Tensor:
    """(3, H, W) RGB in [0, 1] -> the network's input: (x - MEAN) / STD per channel."""
    mean, std = _mean_std()
    return (x - mean) / std


def denormalize(tensor: torch.Tensor) -> np.ndarray:
    """(1, 3, H, W) or (3, H, W) normalised tensor -> (H, W, 3) uint8 array for display."""
    x = tensor.detach().to("cpu", torch.float32)
    if x.dim() == 4:
        x = x[0]                                           # (3, H, W)
    mean, std = _mean_std()
    x = (x * std + mean).clamp(0, 1)
    return (x * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()   # (H, W, 3)
