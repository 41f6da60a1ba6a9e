"""Models by kind; importing this package registers every model."""

import os

# oneDNN keeps a compiled primitive per layer and input shape (1024 by default), with its own
# buffers. Embedders see speech of every length, so the cache grew by ~4 MiB per embedding
# (a 60-minute recording: +2.5 GB) without making anything faster. Set before torch runs a
# layer; a value already in the environment is kept.
os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "16")

from diar.models import (  # noqa: F401  (register "campplus", "ge2e", "segmentation-3.0", "silero", "wavlm-sd", "xvector")
    campplus,
    ge2e,
    segmentation,
    silero,
    wavlm_sd,
    xvector,
)
