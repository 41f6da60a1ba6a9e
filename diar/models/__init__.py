"""Models by kind; importing this package registers every model."""

from diar.models import ge2e, silero, xvector  # noqa: F401  (register "ge2e", "silero", "xvector")
