"""`imgproc-extractor`: the extract stage's worker process."""

import pillow_heif

# Pillow reads HEIC/HEIF through pillow-heif's opener, registered once per process here (this
# package is imported before any of its modules). Depth and auxiliary images are never used.
pillow_heif.register_heif_opener(depth_images=False, aux_images=False)
