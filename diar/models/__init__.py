"""Models by kind; importing this package registers every model."""

from diar.models import ge2e, silero  # noqa: F401  (register "ge2e" and "silero")
