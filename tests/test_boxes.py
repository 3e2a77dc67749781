"""Box operations (detr_viz.boxes): the one cxcywh -> xyxy conversion, COCO xywh -> cxcywh, GIoU."""
import numpy as np
import pytest
import torch

from detr_viz.boxes import cxcywh_to_xyxy, generalized_box_iou, xywh_to_cxcywh
from detr_viz.viz import boxes_to_xyxy

CXCYWH = [[0.5, 0.5, 0.2, 0.4], [0.25, 0.75, 0.5, 0.1]]
XYXY = [[0.4, 0.3, 0.6, 0.7], [0.0, 0.7, 0.5, 0.8]]


def test_cxcywh_to_xyxy_torch_and_numpy():
    t = torch.tensor(CXCYWH, requires_grad=True)
    out = cxcywh_to_xyxy(t)
    assert torch.allclose(out, torch.tensor(XYXY))
    out.sum().backward()                                     # differentiable (box losses)
    assert t.grad is not None
    a = cxcywh_to_xyxy(np.array(CXCYWH))
    assert isinstance(a, np.ndarray) and np.allclose(a, XYXY)
    assert cxcywh_to_xyxy(torch.zeros(2, 3, 4)).shape == (2, 3, 4)          # any leading shape


def test_pixel_boxes_of_the_pictures_agree():
    """viz.boxes_to_xyxy (pixel boxes of the pictures) is the same conversion, scaled to (H, W)."""
    H, W = 48, 64
    expect = cxcywh_to_xyxy(np.array(CXCYWH)) * np.array([W, H, W, H])
    assert np.allclose(boxes_to_xyxy(torch.tensor(CXCYWH), (H, W)), expect)


def test_xywh_round_trip_and_giou():
    xywh = torch.tensor([[10.0, 20.0, 30.0, 40.0]])
    c = xywh_to_cxcywh(xywh)
    assert c.tolist() == [[25.0, 40.0, 30.0, 40.0]]
    assert cxcywh_to_xyxy(c).tolist() == [[10.0, 20.0, 40.0, 60.0]]
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
    b = torch.tensor([[1.0, 1.0, 3.0, 3.0], [4.0, 0.0, 5.0, 1.0]])
    g = generalized_box_iou(a, b)                            # (1, 2)
    assert g[0, 0].item() == pytest.approx(1 / 7 - 2 / 9)    # IoU 1/7, hull 9, union 7
    assert g[0, 1].item() == pytest.approx(0 - (10 - 5) / 10)


def test_pixel_boxes_scale_x_by_width_and_y_by_height():
    b = torch.tensor([[0.5, 0.25, 0.2, 0.1]])
    px = boxes_to_xyxy(b, (100, 200))                  # size = (H, W)
    np.testing.assert_allclose(px, [[80.0, 20.0, 120.0, 30.0]], rtol=1e-6)


def test_normalize_is_the_official_transform_and_round_trips():
    from torchvision import transforms as T

    from detr_viz.images import MEAN, STD, denormalize, normalize
    x = torch.rand(3, 17, 23)
    assert torch.equal(normalize(x), T.Normalize(MEAN, STD)(x))
    img = (torch.rand(3, 8, 9) * 255).round() / 255
    back = torch.from_numpy(denormalize(normalize(img))).permute(2, 0, 1).float() / 255
    torch.testing.assert_close(back, img, atol=1e-6, rtol=0)
