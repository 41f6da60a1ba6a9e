"""Audio container headers (diar.containers): the declared rate and length, in every container
that declares them, against files soundfile writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from audio_containers import CONTAINERS, SR, W64_TAIL, write, zero_rate

from diar.audio import load_audio
from diar.containers import read_header
from diar.errors import AudioDecodeError


@pytest.mark.parametrize("name", sorted(CONTAINERS))
@pytest.mark.parametrize("channels", [1, 2])
def test_a_whole_file_is_read_and_declares_what_it_holds(name: str, channels: int, tmp_path: Path) -> None:
    if name == "8svx" and channels == 2:
        pytest.skip("libsndfile writes 8SVX mono only")
    path = write(tmp_path / f"a.{CONTAINERS[name][2]}", name, channels=channels)
    header = read_header(path)
    assert header is not None and header.container == CONTAINERS[name][3]
    assert header.sample_rate == SR
    assert not header.truncated
    frame = CONTAINERS[name][4]
    assert header.frame_bytes == (frame * channels if frame else None)
    if frame:
        assert header.data_bytes == 2 * SR * frame * channels
    got = len(load_audio(str(path), SR, "a"))
    assert got == 2 * SR if frame else 2 * SR <= got < 2 * SR + 1024  # ADPCM: whole blocks


@pytest.mark.parametrize("name", sorted(CONTAINERS))
def test_a_cut_file_is_truncated_audio_not_a_shorter_recording(name: str, tmp_path: Path) -> None:
    path = write(tmp_path / f"a.{CONTAINERS[name][2]}", name, seconds=4.0)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    container, frame = CONTAINERS[name][3], CONTAINERS[name][4]
    declared = f"declares {4 * SR} frames" if frame else r"declares \d+ bytes of audio"
    with pytest.raises(AudioDecodeError, match=f"truncated audio: the {container} header {declared}"):
        load_audio(str(path), SR, "a")


@pytest.mark.parametrize("name", [*sorted(CONTAINERS), "flac"])
def test_a_header_rate_of_zero_says_so(name: str, tmp_path: Path) -> None:
    if name == "flac":
        path = tmp_path / "a.flac"
        sf.write(path, np.zeros(SR, dtype=np.float32), SR)
    else:
        path = write(tmp_path / f"a.{CONTAINERS[name][2]}", name)
    zero_rate(path)
    with pytest.raises(AudioDecodeError, match=r"implausible sample rate 0 Hz in the header \(allowed: 1000"):
        load_audio(str(path), SR, "a")


def patch(path: Path, at: int, value: bytes) -> None:
    data = bytearray(path.read_bytes())
    data[at : at + len(value)] = value
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("name", ["rf64", "w64", "au", "caf", "aiff"])
def test_sizes_a_streaming_writer_leaves_unknown_are_not_checked(name: str, tmp_path: Path) -> None:
    """Writers on a pipe cannot seek back to fill in the sizes: such files are whole."""
    path = write(tmp_path / f"a.{CONTAINERS[name][2]}", name)
    data = path.read_bytes()
    if name == "rf64":
        patch(path, data.index(b"ds64") + 16, b"\xff" * 8)
    elif name == "w64":
        patch(path, data.index(b"data" + W64_TAIL) + 16, b"\xff" * 8)
    elif name == "au":
        patch(path, 8, b"\xff" * 4)
    elif name == "caf":
        patch(path, data.index(b"data") + 4, b"\xff" * 8)
    else:
        patch(path, data.index(b"SSND") + 4, (0x7FFFFFF0).to_bytes(4, "big"))
    header = read_header(path)
    assert header is not None and header.data_bytes is None and not header.truncated


#: An AIFF whose COMM chunk ends inside its sample rate (the file is cut there).
CUT_COMM = b"FORM\x00\x00\x00\x1cAIFFCOMM\x00\x00\x00\x12\x00\x01\x00\x00\x00\x10\x00\x10\x40"


def test_odd_bytes_are_left_to_libsndfile(tmp_path: Path) -> None:
    for i, head in enumerate(
        [b"RIFF\x00\x00\x00\x00WAVEfmt \xff\xff", b"FORM", b".snd\x00", b"NIST_1A\nxx", b"", CUT_COMM]
    ):
        path = tmp_path / f"odd{i}.wav"
        path.write_bytes(head)
        read_header(path)  # never raises
    assert read_header(tmp_path / "odd5.wav") is None
    with pytest.raises(AudioDecodeError):  # libsndfile's own refusal, as an AudioError
        load_audio(str(tmp_path / "odd5.wav"), SR, "a")
    with open(tmp_path / "odd0.wav", "rb") as f:
        f.read(3)
        read_header(f)
        assert f.tell() == 3  # the position it was given
