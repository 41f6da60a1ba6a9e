"""Core value types: speaker turns and per-recording annotations.

Times are seconds (floats) at the edges of the library; frame-level work uses
integer frame indices on a fixed grid, converted here and nowhere else.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from diar.errors import quote

#: Frame shift of every frame-level label array in diar (ModelScope's 10 ms grid).
FRAME_SHIFT = 0.01
#: Latest time in seconds a reader accepts (RTTM, vad, UEM): a billion seconds is 31 years, so
#: a larger time is a typo or a corrupt file, not a recording (and float64 seconds would soon
#: lose the microseconds scoring resolves).
MAX_SECONDS = 1e9


def seconds_to_frames(seconds: float, shift: float = FRAME_SHIFT) -> int:
    """Index of the frame that contains time ``seconds`` (rounded to nearest boundary)."""
    return round(seconds / shift)


def frames_to_seconds(frames: int, shift: float = FRAME_SHIFT) -> float:
    """Start time of frame ``frames``, rounded to microseconds to avoid float noise."""
    return round(frames * shift, 6)


def is_token(value: str) -> bool:
    """Whether ``value`` can be one field of a whitespace-separated line (RTTM, vad, Kaldi
    manifests): non-empty, without whitespace."""
    return bool(value) and not any(c.isspace() for c in value)


@dataclass(frozen=True, order=True)
class Turn:
    """One speaker turn: ``speaker`` talks in ``reco_id`` from ``start`` to ``end`` seconds."""

    reco_id: str
    start: float
    end: float
    speaker: str

    def __post_init__(self) -> None:
        if not (math.isfinite(self.start) and math.isfinite(self.end)):
            raise ValueError(f"turn of {quote(self.reco_id)} has non-finite bounds {self.start}..{self.end}")
        if self.start < 0 or self.end < self.start:
            raise ValueError(
                f"turn of {quote(self.reco_id)} speaker {quote(self.speaker)} has invalid bounds "
                f"start={self.start} end={self.end}"
            )

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class Annotation:
    """All speaker turns of one recording, kept sorted by (start, end, speaker).

    A frame may be covered by several speakers (overlapped speech); a speaker's
    own turns never overlap each other once built through :meth:`from_turns`
    with ``merge=True`` or :meth:`from_labels`.
    """

    reco_id: str
    turns: tuple[Turn, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        for turn in self.turns:
            if turn.reco_id != self.reco_id:
                raise ValueError(f"turn of {quote(turn.reco_id)} inside annotation of {quote(self.reco_id)}")
        ordered = tuple(sorted(self.turns, key=lambda t: (t.start, t.end, t.speaker)))
        object.__setattr__(self, "turns", ordered)

    @classmethod
    def from_turns(cls, reco_id: str, turns: Iterable[Turn], merge: bool = False) -> Annotation:
        """Build an annotation; with ``merge`` a speaker's overlapping or touching turns are joined."""
        turns = list(turns)
        if merge:
            turns = _merge_per_speaker(turns)
        return cls(reco_id, tuple(turns))

    @classmethod
    def from_labels(
        cls,
        reco_id: str,
        labels: Sequence[Sequence[int]] | object,
        speakers: Sequence[str],
        shift: float = FRAME_SHIFT,
        offset: float = 0.0,
    ) -> Annotation:
        """Turns from a binary frame-label matrix.

        Args:
            labels: shape (num_frames, num_speakers), nonzero where the speaker talks.
            speakers: one name per column.
            shift: frame shift in seconds.
            offset: time of frame 0 in seconds.
        """
        import numpy as np

        arr = np.asarray(labels).astype(bool)
        if arr.ndim != 2 or arr.shape[1] != len(speakers):
            raise ValueError(f"labels of shape {arr.shape} do not match {len(speakers)} speakers")
        turns = []
        for k, speaker in enumerate(speakers):
            col = np.concatenate([[False], arr[:, k], [False]]).astype(np.int8)
            edges = np.flatnonzero(np.diff(col))
            for s, e in zip(edges[::2], edges[1::2], strict=True):
                turns.append(
                    Turn(
                        reco_id,
                        round(offset + frames_to_seconds(int(s), shift), 6),
                        round(offset + frames_to_seconds(int(e), shift), 6),
                        speaker,
                    )
                )
        return cls(reco_id, tuple(turns))

    def __iter__(self) -> Iterator[Turn]:
        return iter(self.turns)

    def __len__(self) -> int:
        return len(self.turns)

    @property
    def speakers(self) -> list[str]:
        """Speaker labels, sorted."""
        return sorted({t.speaker for t in self.turns})

    def speech_duration(self) -> float:
        """Seconds where at least one speaker talks."""
        total, cur_start, cur_end = 0.0, None, None
        for t in sorted(self.turns):
            if cur_end is None or t.start > cur_end:
                if cur_end is not None and cur_start is not None:
                    total += cur_end - cur_start
                cur_start, cur_end = t.start, t.end
            else:
                cur_end = max(cur_end, t.end)
        if cur_end is not None and cur_start is not None:
            total += cur_end - cur_start
        return total

    def rename(self, mapping: dict[str, str]) -> Annotation:
        """Relabel speakers (labels missing from ``mapping`` are kept)."""
        return Annotation(
            self.reco_id,
            tuple(Turn(t.reco_id, t.start, t.end, mapping.get(t.speaker, t.speaker)) for t in self.turns),
        )


def _merge_per_speaker(turns: list[Turn]) -> list[Turn]:
    merged: list[Turn] = []
    by_speaker: dict[str, list[Turn]] = {}
    for t in turns:
        by_speaker.setdefault(t.speaker, []).append(t)
    for speaker_turns in by_speaker.values():
        speaker_turns.sort()
        cur = speaker_turns[0]
        for t in speaker_turns[1:]:
            if t.start <= cur.end:
                cur = Turn(cur.reco_id, cur.start, max(cur.end, t.end), cur.speaker)
            else:
                merged.append(cur)
                cur = t
        merged.append(cur)
    return merged
