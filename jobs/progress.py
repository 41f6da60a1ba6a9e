"""The driver's progress bar: recordings and hours of audio done, with an ETA.

The bar counts audio seconds (so the ETA follows the audio still to process,
not the number of files); the recordings count rides along as a postfix. It
writes to stderr and disappears when stderr is not a terminal unless forced.
"""

from __future__ import annotations

import sys
from types import TracebackType

from tqdm import tqdm


class Progress:
    """Progress over ``total_recordings`` recordings holding ``total_seconds`` of audio.

    ``show``: True or False forces the bar on or off; None shows it on a terminal only.
    """

    def __init__(
        self,
        total_recordings: int,
        total_seconds: float,
        done_recordings: int = 0,
        done_seconds: float = 0.0,
        show: bool | None = None,
        desc: str = "diarize",
    ) -> None:
        self.total_recordings = total_recordings
        self.recordings = done_recordings
        self.failed = 0
        self._seconds = done_seconds
        self._partial: tuple[int, float] = (0, 0.0)
        self._bar = tqdm(
            total=round(total_seconds / 3600.0, 4),
            initial=round(done_seconds / 3600.0, 4),
            unit="h",
            unit_scale=False,
            desc=desc,
            file=sys.stderr,
            disable=None if show is None else not show,  # None: only when stderr is a terminal
            dynamic_ncols=True,
            bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.3f}/{total:.3f} h audio "
            "[{elapsed}<{remaining}]{postfix}",
        )
        self._refresh_postfix()

    def advance(self, recordings: int, seconds: float, failed: int = 0) -> None:
        """Count ``recordings`` more recordings (``failed`` of them failed) holding ``seconds`` of audio."""
        self.recordings += recordings
        self.failed += failed
        self._seconds += seconds
        self._partial = (0, 0.0)
        self._show()

    def partial(self, recordings: int, seconds: float) -> None:
        """Show ``recordings`` / ``seconds`` done inside shards still running (replaces the last call)."""
        self._partial = (recordings, seconds)
        self._show()

    def _show(self) -> None:
        self._refresh_postfix(refresh=False)
        self._bar.n = round((self._seconds + self._partial[1]) / 3600.0, 4)
        self._bar.refresh()

    def _refresh_postfix(self, refresh: bool = True) -> None:
        text = f"recordings {self.recordings + self._partial[0]}/{self.total_recordings}"
        if self.failed:
            text += f", {self.failed} failed"
        self._bar.set_postfix_str(text, refresh=refresh)

    def close(self) -> None:
        self._bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
