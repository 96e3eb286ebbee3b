"""Benchmarks: `python -m bench.thumbnails` (also `make bench`, `imgproc bench thumbnails`)."""
