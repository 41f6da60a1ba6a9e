"""Audio files in every container soundfile writes, and header edits (a rate of 0), for the
container tests (tests/test_diar/test_containers.py) and the reliability matrix."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

SR = 16000
W64_TAIL = b"\xf3\xac\xd3\x11\x8c\xd1\x00\xc0\x4f\x8e\xdb\x8a"

#: name -> (soundfile format, subtype, extension, container name in messages, bytes per frame or None)
CONTAINERS = {
    "wav": ("WAV", "PCM_16", "wav", "WAV", 2),
    "wav-float": ("WAV", "FLOAT", "wav", "WAV", 4),
    "wavex": ("WAVEX", "PCM_24", "wav", "WAV", 3),
    "wav-adpcm": ("WAV", "IMA_ADPCM", "wav", "WAV", None),
    "rf64": ("RF64", "PCM_16", "rf64", "RF64", 2),
    "w64": ("W64", "PCM_16", "w64", "W64", 2),
    "aiff": ("AIFF", "PCM_16", "aiff", "AIFF", 2),
    "aifc-float": ("AIFF", "FLOAT", "aifc", "AIFF", 4),
    "aiff-ulaw": ("AIFF", "ULAW", "aiff", "AIFF", 1),
    "au": ("AU", "PCM_16", "au", "AU", 2),
    "caf": ("CAF", "PCM_16", "caf", "CAF", 2),
    "nist": ("NIST", "PCM_16", "nist", "NIST", 2),
    "8svx": ("SVX", "PCM_16", "svx", "8SVX", None),
}


def write(path: Path, name: str, seconds: float = 2.0, channels: int = 1) -> Path:
    fmt, subtype, _, _, _ = CONTAINERS[name]
    rng = np.random.default_rng(0)
    audio = (0.1 * rng.standard_normal((round(seconds * SR), channels))).astype(np.float32)
    sf.write(path, audio, SR, format=fmt, subtype=subtype)
    return path


def zero_rate(path: Path) -> None:
    """Set the header sample rate of ``path`` (any container of CONTAINERS, or FLAC) to 0."""
    data = bytearray(path.read_bytes())
    if data[:4] == b"riff":
        at = data.index(b"fmt " + W64_TAIL) + 24 + 4
        data[at : at + 4] = bytes(4)
    elif data[:4] in (b"RIFF", b"RF64"):
        at = data.index(b"fmt ") + 8 + 4
        data[at : at + 4] = bytes(4)
    elif data[8:12] in (b"AIFF", b"AIFC"):
        at = data.index(b"COMM") + 8 + 8
        data[at : at + 10] = bytes(10)
    elif data[8:12] in (b"8SVX", b"16SV"):
        at = data.index(b"VHDR") + 20
        data[at : at + 2] = bytes(2)
    elif data[:4] == b".snd":
        data[16:20] = bytes(4)
    elif data[:4] == b"caff":
        at = data.index(b"desc") + 12
        data[at : at + 8] = bytes(8)
    elif data[:7] == b"NIST_1A":
        at = data.index(b"sample_rate -i ") + len(b"sample_rate -i ")
        data[at : at + 5] = b"0    "
    elif data[:4] == b"fLaC":
        data[18:20] = bytes(2)
        data[20] &= 0x0F
    else:
        raise AssertionError(f"no sample rate to patch in {path}")
    path.write_bytes(bytes(data))
