"""The output formats by name: the one registry behind ``diar diarize --format``,
``job.out_formats`` and the job's shard and corpus files.

Every format but ``exclusive`` writes a recording's annotation (overlap-aware, unless
``postprocess.exclusive``); ``exclusive`` writes its exclusive turns as RTTM
(``corpus.exclusive.rttm``), so that one run gives both.

Adding a format: its module (reader and writer side by side), then one entry in
:data:`OUTPUT_FORMATS`.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import IO, Any

from diar.errors import FormatError, quote
from diar.formats import atomic_open, parquet, rttm, vad
from diar.types import Annotation

#: ``write(annotations, file, model)``: ``file`` a text file for text formats, else binary;
#: ``model`` names what produced the turns (formats that have no place for it ignore it).
Writer = Callable[[Sequence[Annotation], IO[Any], str], object]


@dataclass(frozen=True)
class OutputFormat:
    """A format turns can be written in: its name, writer and file suffix.

    Attributes:
        suffix: what its files end with after the dot (``corpus.<suffix>``); "" : the name.
        exclusive: it holds the exclusive turns (at most one speaker at a time,
            :meth:`~diar.pipelines.base.Diarization.exclusive_turns`), not the annotation.
    """

    name: str
    description: str
    binary: bool
    write: Writer
    suffix: str = ""
    exclusive: bool = False

    def file_name(self, stem: str) -> str:
        """The name of a file of this format: ``corpus`` -> ``corpus.exclusive.rttm``."""
        return f"{stem}.{self.suffix or self.name}"

    def to_bytes(self, annotations: Iterable[Annotation], model: str = "") -> bytes:
        """The file's content (text formats: UTF-8, ``\\n`` line ends), ``annotations`` in order."""
        items = list(annotations)
        if self.binary:
            buf = io.BytesIO()
            self.write(items, buf, model)
            return buf.getvalue()
        text = io.StringIO()
        self.write(items, text, model)
        return text.getvalue().encode("utf-8")

    def write_file(
        self, annotations: Iterable[Annotation], path: str | os.PathLike[str], model: str = ""
    ) -> None:
        """Write ``annotations`` to ``path`` atomically (a failed write leaves the previous file)."""
        items = list(annotations)
        with atomic_open(path, "wb" if self.binary else "w") as f:
            self.write(items, f, model)


def _write_parquet(annotations: Sequence[Annotation], f: IO[Any], model: str) -> object:
    return parquet.write_parquet(annotations, f, model=model)


#: Every output format, in the order corpus files are listed (RTTM first).
OUTPUT_FORMATS: dict[str, OutputFormat] = {
    f.name: f
    for f in (
        OutputFormat(
            "rttm", "NIST RTTM, one SPEAKER line per turn", False, lambda a, f, m: rttm.write_rttm(a, f)
        ),
        OutputFormat(
            "parquet", "a table: reco_id, speaker, start, end, duration, model", True, _write_parquet
        ),
        OutputFormat(
            "vad",
            "ModelScope's '<reco-id> <speaker>: [start, end], ...' lines",
            False,
            lambda a, f, m: vad.write_vad(a, f),
        ),
        OutputFormat(
            "exclusive",
            "NIST RTTM of the exclusive turns: at most one speaker at a time (for transcripts)",
            False,
            lambda a, f, m: rttm.write_rttm(a, f),
            suffix="exclusive.rttm",
            exclusive=True,
        ),
    )
}


def output_format(name: str) -> OutputFormat:
    """The format called ``name``.

    Raises:
        FormatError: an unknown name; the message lists the known ones.
    """
    try:
        return OUTPUT_FORMATS[name]
    except (KeyError, TypeError):
        raise FormatError(
            f"unknown output format {quote(name)}; valid: {', '.join(OUTPUT_FORMATS)}"
        ) from None


def corpus_formats(names: Iterable[str]) -> list[OutputFormat]:
    """The formats of a job's corpus files: RTTM always, then those ``names`` asks for, in
    :data:`OUTPUT_FORMATS` order (FormatError for an unknown name)."""
    wanted = {output_format(name).name for name in names} | {"rttm"}
    return [f for name, f in OUTPUT_FORMATS.items() if name in wanted]
