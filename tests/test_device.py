"""Device choice: argument > DETR_VIZ_DEVICE > CUDA > MPS > CPU, with clear errors."""
import pytest
import torch
from conftest import TINY

from detr_viz import create_model
from detr_viz.device import device_name, select_device


def test_argument_and_environment_override(monkeypatch):
    monkeypatch.setenv("DETR_VIZ_DEVICE", "cpu")
    assert select_device() == torch.device("cpu")
    monkeypatch.delenv("DETR_VIZ_DEVICE")
    assert select_device("cpu") == torch.device("cpu")


def test_default_prefers_cuda_then_mps_then_cpu(monkeypatch):
    monkeypatch.delenv("DETR_VIZ_DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert select_device().type == "cpu"
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert select_device().type == "mps"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert select_device().type == "cuda"


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_asking_for_missing_cuda_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("DETR_VIZ_DEVICE", "cuda")
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        select_device()


def test_model_lands_on_the_chosen_device():
    model = create_model(TINY, device="cpu")
    assert next(model.parameters()).device.type == "cpu" and not model.training
    assert device_name("cpu").startswith("CPU")
