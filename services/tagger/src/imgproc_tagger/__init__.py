"""`imgproc-tagger`: the tag stage's worker process."""

import os

# numpy's bundled OpenBLAS starts a thread per core and, after each product (the label map's
# 1000x98 one per image), keeps them spinning for a while: measured in a load test, that idle
# spinning cost more CPU than the model itself. The products here are tiny; one thread is
# fastest, and the process's parallelism comes from the worker's thread pool. Set before numpy
# is first imported (this package is imported before any of its modules).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import pillow_heif

# Pillow reads HEIC/HEIF through pillow-heif's opener, registered once per process here.
pillow_heif.register_heif_opener(depth_images=False, aux_images=False)
