"""Box format and input normalisation: one function each."""
import numpy as np
import torch
from torchvision import transforms as T

from detr_viz.boxes import box_cxcywh_to_xyxy
from detr_viz.images import MEAN, STD, denormalize, normalize
from detr_viz.viz import boxes_to_xyxy


def test_cxcywh_to_xyxy():
    b = torch.tensor([[0.5, 0.25, 0.2, 0.1], [0.1, 0.9, 0.2, 0.2]])
    torch.testing.assert_close(box_cxcywh_to_xyxy(b), torch.tensor([[0.4, 0.2, 0.6, 0.3], [0.0, 0.8, 0.2, 1.0]]))
    assert box_cxcywh_to_xyxy(torch.zeros(2, 3, 4)).shape == (2, 3, 4)
    # the drawing helper scales x by the width and y by the height
    px = boxes_to_xyxy(b[:1], (100, 200))                  # size = (H, W)
    np.testing.assert_allclose(px, [[80.0, 20.0, 120.0, 30.0]], rtol=1e-6)


def test_normalize_is_the_official_transform_and_round_trips():
    x = torch.rand(3, 17, 23)
    assert torch.equal(normalize(x), T.Normalize(MEAN, STD)(x))
    img = (torch.rand(3, 8, 9) * 255).round() / 255
    back = torch.from_numpy(denormalize(normalize(img))).permute(2, 0, 1).float() / 255
    torch.testing.assert_close(back, img, atol=1e-6, rtol=0)
