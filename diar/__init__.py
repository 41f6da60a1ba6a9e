"""diar: speaker diarization ("who spoke when") as a distributed batch job on Ray."""

from diar.types import Annotation, Turn

__all__ = ["Annotation", "Turn", "__version__"]
__version__ = "0.1.0"
