"""Models by kind; importing this package registers every model."""

from diar.models import (  # noqa: F401  (register "campplus", "ge2e", "segmentation-3.0", "silero", "wavlm-sd", "xvector")
    campplus,
    ge2e,
    segmentation,
    silero,
    wavlm_sd,
    xvector,
)
