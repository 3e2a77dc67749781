"""Where the model runs: CUDA if present, else Apple MPS, else CPU (override: DETR_VIZ_DEVICE)."""
from __future__ import annotations

import os

import torch

ENV_VAR = "DETR_VIZ_DEVICE"


def select_device(device=None) -> torch.device:
    """`device` argument > $DETR_VIZ_DEVICE > cuda > mps > cpu."""
    choice = device if device is not None else os.environ.get(ENV_VAR) or None
    if choice is not None:
        dev = torch.device(choice)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"device {choice!r} was asked for, but CUDA is not available here; "
                               f"unset {ENV_VAR} or use 'cpu'")
        if dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise RuntimeError(f"device {choice!r} was asked for, but Apple MPS is not available here; "
                               f"unset {ENV_VAR} or use 'cpu'")
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda")
    if hasattr(torch.backends, "mps") and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def device_name(device) -> str:
    """Human-readable name: the GPU's name, 'Apple GPU (MPS)', or 'CPU (n threads)'."""
    device = torch.device(device)
    if device.type == "cuda":
        return f"GPU: {torch.cuda.get_device_name(device)}"
    if device.type == "mps":
        return "Apple GPU (MPS)"
    return f"CPU ({torch.get_num_threads()} threads)"


def synchronize(device) -> None:
    """Wait for queued GPU work, so per-stage times are real."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()
