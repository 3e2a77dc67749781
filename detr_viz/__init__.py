"""detr_viz: DETR panoptic segmentation, with every intermediate tensor recorded.

    import detr_viz
    model = detr_viz.create_model("detr-r50-panoptic", weights="official")   # or "toyworld"
    t = detr_viz.trace(model, "photo.jpg")
    t.names()                     # stage names in pipeline order
    t["bbox_attention"].shape     # (1, 100, 8, h, w)
    t.panoptic.id_map, t.panoptic.segments

No Streamlit in here: the app's pages are thin views over this library.
"""
from .categories import Category, CategoryTable, get_categories
from .config import DETRConfig
from .device import select_device
from .errors import WeightsUnavailable
from .images import ImageError, load_image, preprocess
from .models import create_model
from .postprocess import PanopticResult, postprocess_panoptic, postprocess_panoptic_batch
from .registry import MODELS
from .segmentation import DETRPanoptic
from .stages import STAGES, STEPS, stage, stage_names
from .trace import Trace, trace

__version__ = "0.1.0"

__all__ = [
    "MODELS", "STAGES", "STEPS", "Category", "CategoryTable", "DETRConfig", "DETRPanoptic", "ImageError",
    "PanopticResult", "Trace", "WeightsUnavailable", "create_model", "get_categories", "load_image",
    "postprocess_panoptic", "postprocess_panoptic_batch", "preprocess", "select_device", "stage", "stage_names", "trace",
]
