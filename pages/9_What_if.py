"""What if: every intervention of the lab for one query (heads, attention, features, skips), the
merge changes and occlusion, in one place. The experiment lives in the URL (`wi_*` parameters), so a
teacher can share a link to it. A thin view over detr_viz.whatif (see ui/whatif_page.py and ui/whatif_view.py)."""
from __future__ import annotations

from ui import page, whatif_page

STEP = 9

page.run(STEP, [whatif_page.intro, whatif_page.mask, whatif_page.merge, whatif_page.occlusion, whatif_page.url],
         title="What if", shapes=False)
