"""Turns as a Parquet table (pyarrow): reader and writer.

Columns, one row per turn: ``reco_id`` (string), ``speaker`` (string),
``start``, ``end``, ``duration`` (float64 seconds; ``duration`` = end - start
rounded to microseconds) and ``model`` (string, the model or pipeline that
produced the turn). Rows are in annotation order.
Written atomically when given a path.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import IO, TYPE_CHECKING, Any

from diar.errors import ManifestError, one_line, quote
from diar.formats import as_annotations, atomic_open
from diar.manifests import describe_path_error, source_name
from diar.types import MAX_SECONDS, Annotation, Turn

if TYPE_CHECKING:
    from diar.config import Config

COLUMNS = ("reco_id", "speaker", "start", "end", "duration", "model")


def schema() -> Any:
    """The pyarrow schema of the table."""
    import pyarrow as pa

    return pa.schema(
        [
            ("reco_id", pa.string()),
            ("speaker", pa.string()),
            ("start", pa.float64()),
            ("end", pa.float64()),
            ("duration", pa.float64()),
            ("model", pa.string()),
        ]
    )


def to_table(annotations: Annotation | Iterable[Annotation], model: str) -> Any:
    """A ``pyarrow.Table`` with one row per turn (see module docstring)."""
    import pyarrow as pa

    turns = [t for a in as_annotations(annotations) for t in a.turns]
    return pa.table(
        {
            "reco_id": [t.reco_id for t in turns],
            "speaker": [t.speaker for t in turns],
            "start": [t.start for t in turns],
            "end": [t.end for t in turns],
            "duration": [round(t.end - t.start, 6) for t in turns],
            "model": [model] * len(turns),
        },
        schema=schema(),
    )


def write_parquet(
    annotations: Annotation | Iterable[Annotation], path: str | os.PathLike[str] | IO[bytes], model: str
) -> int:
    """Write the turns to ``path`` (atomically) or a binary file object; returns the number of rows."""
    import pyarrow.parquet as pq

    table = to_table(annotations, model)
    if isinstance(path, (str, os.PathLike)):
        with atomic_open(path, "wb") as f:
            pq.write_table(table, f)
    else:
        pq.write_table(table, path)
    return int(table.num_rows)


def read_parquet(path: str | os.PathLike[str] | IO[bytes]) -> dict[str, Annotation]:
    """Read a table written by :func:`write_parquet` into one annotation per recording.

    Raises:
        ManifestError: naming the file (and the row, from 1) for a file that is no Parquet
            table, a missing column, an empty id or label, or times that are no finite
            seconds with ``0 <= start <= end <= MAX_SECONDS``.
    """
    import pyarrow.parquet as pq

    name = source_name(path)
    try:
        table = pq.read_table(os.fspath(path) if isinstance(path, os.PathLike) else path)
    except OSError as e:
        raise ManifestError(name, None, describe_path_error(e, "Parquet file")) from None
    except Exception as e:  # pyarrow's own errors for a file that is no Parquet table
        raise ManifestError(name, None, f"not a Parquet table ({one_line(str(e), 200)})") from None
    missing = [c for c in ("reco_id", "speaker", "start", "end") if c not in table.column_names]
    if missing:
        raise ManifestError(name, None, f"not a diar turn table, missing columns {missing}")
    columns = table.select(["reco_id", "speaker", "start", "end"]).to_pydict()
    turns: dict[str, list[Turn]] = {}
    rows = zip(columns["reco_id"], columns["speaker"], columns["start"], columns["end"], strict=True)
    for number, (reco_id, speaker, start, end) in enumerate(rows, start=1):
        ok_ids = isinstance(reco_id, str) and isinstance(speaker, str) and bool(reco_id) and bool(speaker)
        ok_times = isinstance(start, (int, float)) and isinstance(end, (int, float))
        if not ok_ids or not ok_times or not (0 <= start <= end <= MAX_SECONDS):  # NaN fails too
            raise ManifestError(
                name,
                None,
                f"row {number}: not a turn {quote((reco_id, speaker, start, end))} "
                "(need ids and 0 <= start <= end seconds)",
            )
        turns.setdefault(reco_id, []).append(Turn(reco_id, float(start), float(end), speaker))
    return {reco_id: Annotation(reco_id, tuple(ts)) for reco_id, ts in turns.items()}


def model_name(config: Config) -> str:
    """The ``model`` column: what produced the turns (the frame model in frame mode, else the embedder)."""
    if config.mode == "frame":
        return config.frame_model.name
    return config.embedding.name
