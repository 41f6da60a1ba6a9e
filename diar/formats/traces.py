"""Speaker traces: a Kaldi ark of embeddings and a Parquet table that describes them.

A trace is what a recording's speaker leaves for linking across recordings
(:class:`diar.linking.Trace`). A set of traces is two files written side by side:

* the **ark** (Kaldi binary, written and read with kaldiio): one float32 vector per
  trace, in table order, under the key ``<reco_id>-<speaker>`` (for people reading the
  ark with Kaldi tools; diar never parses keys back, it checks each against its row);
* the **table** (Parquet), one row per trace, in ark order: ``reco_id`` (string),
  ``speaker`` (string), ``seconds`` (float64, the speaker's speech), ``dim`` (int32, the
  vector's length), ``enrolled`` (bool, the speaker label is an enrolled name) and
  ``embedder`` (string, the model that made the vector: traces of different embedders
  cannot be compared).

Rows are sorted by (reco_id, speaker). Both writers take binary file objects.
"""

from __future__ import annotations

import io
import itertools
import math
from collections.abc import Iterable
from typing import IO, Any

import numpy as np

from diar.errors import FormatError, quote
from diar.linking import Trace
from diar.types import is_token

COLUMNS = ("reco_id", "speaker", "seconds", "dim", "enrolled", "embedder")


def schema() -> Any:
    """The pyarrow schema of the table."""
    import pyarrow as pa

    return pa.schema(
        [
            ("reco_id", pa.string()),
            ("speaker", pa.string()),
            ("seconds", pa.float64()),
            ("dim", pa.int32()),
            ("enrolled", pa.bool_()),
            ("embedder", pa.string()),
        ]
    )


def ark_key(trace: Trace) -> str:
    """The ark key of ``trace``: ``<reco_id>-<speaker>`` (never parsed back)."""
    return f"{trace.reco_id}-{trace.speaker}"


def write_traces(traces: Iterable[Trace], ark: IO[bytes], table: IO[bytes], embedder: str) -> int:
    """Write ``traces`` sorted by (reco_id, speaker): vectors to ``ark``, rows to ``table``.

    Returns:
        the number of traces.

    Raises:
        FormatError: an id or label with whitespace (a Kaldi key cannot hold it), or two
            traces of one (recording, speaker).
    """
    import kaldiio
    import pyarrow as pa
    import pyarrow.parquet as pq

    ordered = sorted(traces, key=lambda t: t.key)
    for t in ordered:
        for value, what in ((t.reco_id, "recording id"), (t.speaker, "speaker label")):
            if not is_token(value):
                raise FormatError(f"a trace file cannot hold {what} {quote(value)}: empty or with whitespace")
    for a, b in itertools.pairwise(ordered):
        if a.key == b.key:
            raise FormatError(f"two traces of speaker {quote(a.speaker)} of recording {quote(a.reco_id)}")
    vectors = [np.asarray(t.embedding, dtype=np.float32).reshape(-1) for t in ordered]
    for t, v in zip(ordered, vectors, strict=True):
        kaldiio.save_ark(ark, {ark_key(t): v})  # one call per entry: keys need not be unique
    columns = {
        "reco_id": [t.reco_id for t in ordered],
        "speaker": [t.speaker for t in ordered],
        "seconds": [float(t.seconds) for t in ordered],
        "dim": [len(v) for v in vectors],
        "enrolled": [bool(t.enrolled) for t in ordered],
        "embedder": [embedder] * len(ordered),
    }
    pq.write_table(pa.table(columns, schema=schema()), table)
    return len(ordered)


def read_traces(
    ark: IO[bytes] | bytes, table: IO[bytes] | bytes, name: str = "traces"
) -> list[tuple[Trace, str]]:
    """Read what :func:`write_traces` wrote: ``(trace, embedder)`` per row, in file order.

    Args:
        name: how errors name the pair of files.

    Raises:
        FormatError: the table lacks a column, or the ark does not match it entry for entry
            (another count, key or length).
    """
    import kaldiio
    import pyarrow.parquet as pq

    ark_file = io.BytesIO(ark) if isinstance(ark, bytes) else ark
    table_file = io.BytesIO(table) if isinstance(table, bytes) else table
    try:
        data = pq.read_table(table_file)
    except Exception as e:  # pyarrow raises its own error types for a damaged file
        raise FormatError(
            f"{name}: the trace table is unreadable ({' '.join(str(e).split())[:200]})"
        ) from None
    missing = [c for c in COLUMNS if c not in data.column_names]
    if missing:
        raise FormatError(f"{name}: not a trace table, missing columns {', '.join(missing)}")
    rows = data.select(list(COLUMNS)).to_pydict()
    try:
        entries = list(kaldiio.load_ark(ark_file))
    except Exception as e:  # kaldiio raises ValueError, struct.error, ... on a damaged ark
        raise FormatError(f"{name}: the trace ark is unreadable ({' '.join(str(e).split())[:200]})") from None
    if len(entries) != len(rows["reco_id"]):
        raise FormatError(
            f"{name}: the ark holds {len(entries)} vectors for {len(rows['reco_id'])} table rows"
        )
    out = []
    for i, (key, vector) in enumerate(entries):
        reco_id, speaker, seconds = rows["reco_id"][i], rows["speaker"][i], rows["seconds"][i]
        if not (isinstance(reco_id, str) and isinstance(speaker, str) and isinstance(seconds, float)):
            raise FormatError(
                f"{name}: table row {i + 1} is not a trace ({quote((reco_id, speaker, seconds))})"
            )
        if (
            not (math.isfinite(seconds) and seconds >= 0)
            or rows["dim"][i] is None
            or rows["enrolled"][i] is None
        ):
            raise FormatError(f"{name}: table row {i + 1} is not a trace (seconds {quote(seconds)})")
        trace = Trace(
            reco_id,
            speaker,
            np.asarray(vector, dtype=np.float32).reshape(-1),
            seconds,
            bool(rows["enrolled"][i]),
        )
        if key != ark_key(trace) or trace.embedding.size != rows["dim"][i]:
            raise FormatError(
                f"{name}: ark entry {i + 1} ({quote(key)}, {trace.embedding.size} values) does not match "
                f"table row {i + 1} ({quote(ark_key(trace))}, dim {rows['dim'][i]})"
            )
        out.append((trace, str(rows["embedder"][i])))
    return out
