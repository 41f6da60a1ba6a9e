"""What an audio container's header declares: its sample rate and how much audio it holds.

libsndfile forgives what diar must not: a file cut short is read as a shorter recording
(its frame count clamped to the bytes present, for WAV, RF64, W64, AIFF, AU, NIST, ...),
and a header rate of 0 fails with an internal message. :func:`read_header` reads the
header itself, before libsndfile opens the file, so that :mod:`diar.audio` can compare
the declared amount of audio with the bytes the file holds and check the rate, the same
way for every container that declares them:

* RIFF / RIFX WAVE (WAV, WAVEX): ``fmt `` and ``data`` chunks;
* RF64 / BW64: the ``ds64`` chunk's 64-bit data size;
* Sony Wave64 (W64): GUID chunks with 64-bit sizes;
* AIFF / AIFC (and IFF 8SVX / 16SV): ``COMM`` (or ``VHDR``) and ``SSND`` (or ``BODY``);
* Sun/NeXT AU: the data size field;
* Apple CAF: ``desc`` and ``data`` chunks;
* NIST SPHERE: ``sample_count`` and the header size;
* FLAC: the STREAMINFO rate (libsndfile reports the length of a cut FLAC itself).

Sizes that streaming writers leave unknown (0, all ones, sox's placeholder near 2**31, CAF's
-1) are not checked. Other containers (OGG, MP3, VOC, ...) are left to libsndfile and to
the decoded-frame count of :mod:`diar.audio`.
"""

from __future__ import annotations

import math
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

#: Declared 32-bit sizes at or above this are a streaming writer's placeholder (sox writes
#: values near 2**31 when it cannot seek back), not a length.
UNKNOWN_SIZE_32 = 0x7FFF0000
#: Most bytes of a text header (NIST SPHERE) read.
_MAX_TEXT_HEADER = 1 << 16

_W64_TAIL = b"\xf3\xac\xd3\x11\x8c\xd1\x00\xc0\x4f\x8e\xdb\x8a"
_W64_RIFF = b"riff\x2e\x91\xcf\x11\xa5\xd6\x28\xdb\x04\xc1\x00\x00"
_W64_WAVE = b"wave" + _W64_TAIL

#: WAVE format tags whose block align is the bytes of one frame: PCM, IEEE float, A-law, mu-law.
_WAVE_FRAME_TAGS = frozenset({1, 3, 6, 7})
#: AU encodings -> bytes of one sample (mu-law, 8/16/24/32-bit PCM, float, double, A-law).
_AU_SAMPLE_BYTES = {1: 1, 2: 1, 3: 2, 4: 3, 5: 4, 6: 4, 7: 8, 27: 1}
#: AIFC compression types -> bytes of one sample (None: from the sample size).
_AIFC_SAMPLE_BYTES: dict[bytes, int | None] = {
    b"NONE": None,
    b"twos": None,
    b"sowt": None,
    b"raw ": None,
    b"in24": 3,
    b"in32": 4,
    b"fl32": 4,
    b"FL32": 4,
    b"fl64": 8,
    b"FL64": 8,
    b"ulaw": 1,
    b"ULAW": 1,
    b"alaw": 1,
    b"ALAW": 1,
}


@dataclass(frozen=True)
class Header:
    """What a container's header says, and how much audio data the file holds.

    Attributes:
        container: the container's name (``WAV``, ``RF64``, ``W64``, ``AIFF``, ...).
        sample_rate: the declared rate in Hz, None when the header has none before the data.
        data_bytes: the declared bytes of audio data; None when unknown (a streaming writer's
            placeholder) or when no data chunk was found.
        present_bytes: the bytes from the start of the audio data to the end of the file.
        frame_bytes: bytes of one frame (all channels) for uncompressed audio, else None.
    """

    container: str
    sample_rate: float | None = None
    data_bytes: int | None = None
    present_bytes: int | None = None
    frame_bytes: int | None = None

    @property
    def truncated(self) -> bool:
        """Whether the file holds less audio data than its header declares."""
        return (
            self.data_bytes is not None
            and self.present_bytes is not None
            and self.present_bytes < self.data_bytes
        )

    def shortfall(self) -> str:
        """``"the AIFF header declares 320000 frames, the file holds 160000"`` (bytes when frames
        are not fixed-size)."""
        declared, present = self.data_bytes or 0, max(self.present_bytes or 0, 0)
        if self.frame_bytes:
            return (
                f"the {self.container} header declares {declared // self.frame_bytes} frames, "
                f"the file holds {present // self.frame_bytes}"
            )
        return f"the {self.container} header declares {declared} bytes of audio, the file holds {present}"


def read_header(f: IO[bytes] | str | os.PathLike[str]) -> Header | None:
    """The header of the audio file ``f`` (a path or a seekable binary file, left at its start
    position), or None for a container this module does not read. Never raises on odd bytes:
    what cannot be parsed is left to libsndfile."""
    own = isinstance(f, (str, os.PathLike))
    fh: IO[bytes] = open(f, "rb") if isinstance(f, (str, os.PathLike)) else f
    start = fh.tell()
    try:
        end = fh.seek(0, os.SEEK_END) - start
        fh.seek(start)
        head = fh.read(40)
        for parse in (_riff, _w64, _iff, _au, _caf, _nist, _flac):
            try:
                header = parse(_Reader(fh, start, end), head)
            except (struct.error, ValueError, OverflowError, IndexError):  # bytes cut short
                return None
            if header is not None:
                return header
        return None
    finally:
        if own:
            fh.close()
        else:
            fh.seek(start)


class _Reader:
    """Reads at offsets relative to the start of the file."""

    def __init__(self, fh: IO[bytes], start: int, end: int) -> None:
        self.fh, self.start, self.end = fh, start, end

    def at(self, pos: int, size: int) -> bytes:
        if pos < 0 or pos >= self.end:
            return b""
        self.fh.seek(self.start + pos)
        return self.fh.read(size)


def _chunks(
    r: _Reader, pos: int, id_size: int, size_format: str, align: int = 1, inclusive: bool = False
) -> Iterator[tuple[bytes, int, int]]:
    """``(id, size, body position)`` of each chunk from ``pos`` on, for the chunked containers:
    an ``id_size``-byte id, a ``size_format`` size (struct), the body padded to ``align`` bytes;
    ``inclusive``: the size counts the chunk's own id and size (W64). Ends at the end of the
    file or at a size that cannot be stepped over (negative, or less than what it includes)."""
    head = id_size + struct.calcsize(size_format)
    while pos + head <= r.end:
        chunk = r.at(pos, head)
        size = struct.unpack(size_format, chunk[id_size:head])[0]
        yield chunk[:id_size], size, pos + head
        step = size if inclusive else head + size
        if size < 0 or step < head:
            return
        pos += step + (-step % align)


def _known(size: int, unknown: tuple[int, ...]) -> int | None:
    return None if size in unknown else size


def _wave_fmt(body: bytes, endian: str) -> tuple[float, int | None]:
    """(sample rate, bytes per frame or None) of a WAVE ``fmt `` chunk body."""
    tag, _channels, rate, _byte_rate, block_align = struct.unpack(endian + "HHIIH", body[:14])
    if tag == 0xFFFE and len(body) >= 26:  # WAVE_FORMAT_EXTENSIBLE: the sub-format's tag
        tag = struct.unpack(endian + "H", body[24:26])[0]
    return float(rate), (block_align if tag in _WAVE_FRAME_TAGS and block_align > 0 else None)


def _riff(r: _Reader, head: bytes) -> Header | None:
    if len(head) < 12 or head[:4] not in (b"RIFF", b"RIFX", b"RF64", b"BW64") or head[8:12] != b"WAVE":
        return None
    endian = ">" if head[:4] == b"RIFX" else "<"
    container = "WAV" if head[:4] in (b"RIFF", b"RIFX") else head[:4].decode()
    rate: float | None = None
    frame_bytes: int | None = None
    ds64_data: int | None = None
    for cid, size, body in _chunks(r, 12, 4, endian + "I", align=2):
        if cid == b"ds64":
            ds64_data = _known(struct.unpack("<Q", r.at(body + 8, 8))[0], (0, 2**64 - 1))
        elif cid == b"fmt ":
            rate, frame_bytes = _wave_fmt(r.at(body, min(size, 40)), endian)
        elif cid == b"data":
            if size == 0xFFFFFFFF and container != "WAV":
                declared = ds64_data
            else:
                declared = _known(size, (0,)) if size < UNKNOWN_SIZE_32 else None
            return Header(container, rate, declared, r.end - body, frame_bytes)
        if size == 0xFFFFFFFF:
            break  # an RF64 chunk sized in the ds64 table: not one diar needs
    return Header(container, rate)


def _w64(r: _Reader, head: bytes) -> Header | None:
    if len(head) < 40 or head[:16] != _W64_RIFF or head[24:40] != _W64_WAVE:
        return None
    rate: float | None = None
    frame_bytes: int | None = None
    for guid, size, body in _chunks(r, 40, 16, "<Q", align=8, inclusive=True):
        if guid == b"fmt " + _W64_TAIL:
            rate, frame_bytes = _wave_fmt(r.at(body, 40), "<")
        elif guid == b"data" + _W64_TAIL:
            declared = size - 24 if 24 < size < 2**63 else None
            return Header("W64", rate, declared, r.end - body, frame_bytes)
    return Header("W64", rate)


def _extended(b: bytes) -> float:
    """An IEEE 754 80-bit extended float (AIFF's sample rate)."""
    exponent = ((b[0] & 0x7F) << 8) | b[1]
    mantissa = int.from_bytes(b[2:10], "big")
    if exponent == 0x7FFF:
        return math.nan if mantissa & ((1 << 63) - 1) else math.inf
    try:
        value = math.ldexp(mantissa, exponent - 16383 - 63)
    except OverflowError:
        value = math.inf
    return -value if b[0] & 0x80 else value


def _iff(r: _Reader, head: bytes) -> Header | None:
    if len(head) < 12 or head[:4] != b"FORM" or head[8:12] not in (b"AIFF", b"AIFC", b"8SVX", b"16SV"):
        return None
    kind = head[8:12]
    container = "AIFF" if kind in (b"AIFF", b"AIFC") else "8SVX"
    rate: float | None = None
    frame_bytes: int | None = None
    for cid, size, body in _chunks(r, 12, 4, ">I", align=2):
        if cid == b"COMM":
            comm = r.at(body, min(size, 22))
            channels, _frames, bits = struct.unpack(">hIh", comm[:8])
            rate = _extended(comm[8:18])
            compression = comm[18:22] if kind == b"AIFC" else b"NONE"
            if compression in _AIFC_SAMPLE_BYTES and channels > 0 and bits > 0:
                sample = _AIFC_SAMPLE_BYTES[compression] or (bits + 7) // 8
                frame_bytes = channels * sample
        elif cid == b"VHDR":
            rate = float(struct.unpack(">H", r.at(body + 12, 2))[0])
        elif cid in (b"SSND", b"BODY"):
            data_start, declared = body, size
            if cid == b"SSND":
                offset = struct.unpack(">I", r.at(body, 4))[0]
                data_start, declared = body + 8 + offset, size - 8 - offset
            known = declared if 0 < size < UNKNOWN_SIZE_32 and declared >= 0 else None
            return Header(container, rate, known, r.end - data_start, frame_bytes)
    return Header(container, rate)


def _au(r: _Reader, head: bytes) -> Header | None:
    if len(head) < 24 or head[:4] not in (b".snd", b"dns."):
        return None
    endian = ">" if head[:4] == b".snd" else "<"
    offset, size, encoding, rate, channels = struct.unpack(endian + "IIIII", head[4:24])
    sample = _AU_SAMPLE_BYTES.get(encoding)
    frame_bytes = sample * channels if sample is not None and channels > 0 else None
    declared = None if size == 0xFFFFFFFF else size
    return Header("AU", float(rate), declared, r.end - offset, frame_bytes)


def _caf(r: _Reader, head: bytes) -> Header | None:
    if len(head) < 8 or head[:4] != b"caff":
        return None
    rate: float | None = None
    frame_bytes: int | None = None
    for cid, size, body in _chunks(r, 8, 4, ">q"):
        if cid == b"desc":
            desc = r.at(body, 32)
            rate = struct.unpack(">d", desc[:8])[0]
            fmt, _flags, packet_bytes, packet_frames = struct.unpack(">4sIII", desc[8:24])
            if fmt == b"lpcm" and packet_frames == 1 and packet_bytes > 0:
                frame_bytes = packet_bytes
        elif cid == b"data":
            data_start = body + 4  # after the edit count
            declared = size - 4 if size >= 4 else None  # -1: to the end of the file
            return Header("CAF", rate, declared, r.end - data_start, frame_bytes)
    return Header("CAF", rate)


def _nist(r: _Reader, head: bytes) -> Header | None:
    if not head.startswith(b"NIST_1A"):
        return None
    header_size = int(head[8:16].strip() or b"0")
    fields: dict[str, str] = {}
    for line in r.at(16, min(max(header_size - 16, 0), _MAX_TEXT_HEADER)).split(b"\n"):
        parts = line.decode("ascii", "replace").split(None, 2)
        if parts and parts[0] == "end_head":
            break
        if len(parts) == 3:
            fields[parts[0]] = parts[2].strip()

    def number(key: str) -> int | None:
        value = fields.get(key)
        return (
            int(value)
            if value is not None and value.lstrip("-").isascii() and value.lstrip("-").isdigit()
            else None
        )

    rate, count = number("sample_rate"), number("sample_count")
    channels, sample = number("channel_count") or 1, number("sample_n_bytes")
    coding = fields.get("sample_coding", "pcm")
    frame_bytes = (
        channels * sample if sample and channels > 0 and coding.startswith(("pcm", "ulaw", "alaw")) else None
    )
    declared = (
        count * frame_bytes
        if count is not None and frame_bytes is not None and "shorten" not in coding
        else None
    )
    return Header(
        "NIST", float(rate) if rate is not None else None, declared, r.end - header_size, frame_bytes
    )


def _flac(r: _Reader, head: bytes) -> Header | None:
    if len(head) < 26 or head[:4] != b"fLaC" or head[4] & 0x7F != 0:
        return None
    # STREAMINFO: min/max block (2+2), min/max frame (3+3), then 20 bits of sample rate
    rate = int.from_bytes(head[18:21], "big") >> 4
    return Header("FLAC", float(rate))
