"""Models by kind; importing this package registers every model."""

from diar.models import (  # noqa: F401  (register "campplus", "ge2e", "silero", "wavlm-sd", "xvector")
    campplus,
    ge2e,
    silero,
    wavlm_sd,
    xvector,
)
