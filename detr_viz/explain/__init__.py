"""Teaching views of a `Trace`: the numbers, pictures and live checks each page of the app shows.

One module per step, named after the step's key in `detr_viz.stages.STEPS` and its page file
(`stepK_<key>.py` <-> `pages/K_<Key>.py`): step1_backbone, step2_encoder, step3_decoder,
step4_box_attention, step5_concat_res5, step6_upsampling, step7_merge; plus `home` (the Home
page), `tensors` (the All tensors page) and `common` (what several of them share, re-exported here).
Every picture or table a page draws from a trace is a function declared `@cached` (detr_viz.cache).
"""
from .common import (
                     DISPLAY_WIDTH,
                     Dims,
                     box_cell,
                     cell_index,
                     cell_of_pixel,
                     cell_rect,
                     dims,
                     display_image,
                     effective_cells,
                     grid_overlay,
                     grid_picture,
                     grid_to_picture,
                     mark_cell,
                     marked_photo,
                     picture_size,
                     rgb_grid_picture,
                     shape_str,
                     tile_width,
)

__all__ = ["DISPLAY_WIDTH", "Dims", "box_cell", "cell_index", "cell_of_pixel", "cell_rect", "dims", "display_image",
           "effective_cells", "grid_overlay", "grid_picture", "grid_to_picture", "mark_cell", "marked_photo", "picture_size",
           "rgb_grid_picture", "shape_str", "tile_width"]
