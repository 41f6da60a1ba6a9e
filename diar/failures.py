"""A recording that could not be done: one failure row, the same in every command and job.

``diar diarize`` and ``diar embed`` print them; the Ray jobs write them to
``OUT/failures.tsv``. The stage says where it failed.
"""

from __future__ import annotations

from dataclasses import dataclass

from diar.errors import one_line

#: Stages a recording can fail in: a manifest line, reading its audio, the model (diarizing,
#: or embedding for profiles and ``diar embed``), writing outputs, the job's actor process
#: dying for good (after its restarts and task retries), or giving its transcript's words
#: speakers (``diar attribute``: no diarization of it).
STAGES = ("manifest", "read", "diarize", "embed", "write", "actor", "attribute")

#: Longest message kept in a failure row (characters).
MAX_MESSAGE = 1000


@dataclass(frozen=True, order=True)
class Failure:
    """One failed recording: a row of ``failures.tsv`` (``reco_id, stage, error_type, message``)."""

    reco_id: str
    stage: str
    error_type: str
    message: str

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ValueError(f"failure stage {self.stage!r} is not one of {', '.join(STAGES)}")

    @classmethod
    def from_exception(
        cls, reco_id: str, stage: str, error: BaseException, source: str | None = None
    ) -> Failure:
        """A row for ``error``; the message names ``source`` unless it already does."""
        message = one_line(str(error)) or type(error).__name__
        if source and source not in message:
            message = f"{source}: {message}"
        # capped: Ray's actor-death reports carry whole tracebacks
        return cls(reco_id, stage, type(error).__name__, one_line(message, MAX_MESSAGE))
