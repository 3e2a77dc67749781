"""What if: every intervention of the lab for one query (heads, attention, features, skips), the
merge changes and occlusion, in one place. The experiment lives in the URL (`wi_*` parameters), so a
teacher can share a link to it. A thin view over detr_viz.whatif (see ui/whatif_view.py)."""
from __future__ import annotations

from ui import page, whatif_view

STEP = 9

page.run(STEP, [whatif_view.page_intro, whatif_view.page_mask, whatif_view.page_merge,
                whatif_view.page_occlusion, whatif_view.page_url], title="What if", shapes=False)
