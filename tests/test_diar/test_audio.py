"""diar.audio: decoding, mix-down, resampling, block reading and typed errors, on files made here."""

from __future__ import annotations

import socket
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr
from conftest import WavWriter, synth
from helpers import free_port

from diar.audio import audio_duration, is_url, load_audio, spool_audio
from diar.errors import (
    AudioDecodeError,
    AudioError,
    AudioNotFoundError,
    EmptyAudioError,
    InvalidSamplesError,
)


def dominant_frequency(x: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spectrum) * rate / len(x))


def without_dc(x: np.ndarray) -> np.ndarray:
    """``x`` less its mean (its DC offset), as load_audio returns every recording."""
    return x - np.float32(np.mean(x, dtype=np.float64))


def test_mono_16k_is_returned_unchanged_but_for_its_mean(write_wav: WavWriter) -> None:
    path = write_wav("a.wav", seconds=1.5, kind="noise")
    expected, _ = sf.read(path, dtype="float32")
    got = load_audio(str(path), 16000, "a")
    assert got.dtype == np.float32 and got.shape == (24000,)
    assert abs(float(np.mean(expected))) > 1e-4  # the test signal has an offset to remove
    np.testing.assert_array_equal(got, without_dc(expected))
    assert abs(float(np.mean(got, dtype=np.float64))) < 1e-7


@pytest.mark.parametrize("rate", [8000, 44100, 48000, 22050])
def test_other_rates_are_resampled_keeping_duration_and_pitch(write_wav: WavWriter, rate: int) -> None:
    path = write_wav(f"r{rate}.wav", seconds=2.0, sample_rate=rate)
    got = load_audio(str(path), 16000, "r")
    assert got.dtype == np.float32
    assert abs(len(got) - 32000) <= 1
    assert dominant_frequency(got, 16000) == pytest.approx(440, abs=2)
    reference = soxr.resample(sf.read(path, dtype="float32")[0], rate, 16000, quality="HQ")
    assert len(reference) == len(got)
    # streaming and one-shot soxr differ only at the edges' filter state
    np.testing.assert_allclose(got[200:-200], reference[200:-200], atol=1e-3)


def test_stereo_is_mixed_down_to_the_channel_mean(write_wav: WavWriter) -> None:
    left = synth(1.0, kind="noise", seed=1)[:, 0]
    right = synth(1.0, kind="noise", seed=2)[:, 0]
    path = write_wav("st.wav", data=np.stack([left, right], axis=1), subtype="FLOAT")
    got = load_audio(str(path), 16000, "st")
    assert got.shape == (16000,)
    np.testing.assert_allclose(got, without_dc((left + right) / 2), atol=1e-7)


@pytest.mark.parametrize("name", ["x.flac", "x.ogg", "x.mp3"])
def test_compressed_formats_load(write_wav: WavWriter, name: str) -> None:
    path = write_wav(name, seconds=1.0, sample_rate=16000)
    got = load_audio(str(path), 16000, "x")
    assert abs(len(got) - 16000) < 2000  # codec padding for lossy formats
    assert dominant_frequency(got, 16000) == pytest.approx(440, abs=3)


def test_block_reading_matches_single_block_and_never_reads_float64(
    write_wav: WavWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_wav("long.wav", seconds=3.0, sample_rate=44100, channels=2, kind="noise")
    whole = load_audio(str(path), 16000, "long", block_frames=1 << 22)
    calls: list[tuple[int, str]] = []
    original = sf.SoundFile.read

    def spy(self: sf.SoundFile, frames: int = -1, dtype: str = "float64", **kwargs: object) -> np.ndarray:
        calls.append((frames, dtype))
        return original(self, frames=frames, dtype=dtype, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(sf.SoundFile, "read", spy)
    blocks = load_audio(str(path), 16000, "long", block_frames=1000)
    assert len(calls) >= 44100 * 3 // 1000
    assert all(frames == 1000 and dtype == "float32" for frames, dtype in calls)
    assert len(blocks) == len(whole)
    np.testing.assert_allclose(blocks, whole, atol=1e-5)


def test_silent_audio_is_valid(write_wav: WavWriter) -> None:
    got = load_audio(str(write_wav("quiet.wav", kind="silence")), 16000, "quiet")
    assert got.shape == (16000,) and not got.any()


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(AudioNotFoundError, match=r"'gone'.*no such file"):
        load_audio(str(tmp_path / "gone.wav"), 16000, "gone")


def test_zero_byte_file(tmp_path: Path) -> None:
    path = tmp_path / "zero.wav"
    path.write_bytes(b"")
    with pytest.raises(AudioDecodeError, match=r"'zero'.*zero-byte"):
        load_audio(str(path), 16000, "zero")


def test_text_file_named_wav(tmp_path: Path) -> None:
    path = tmp_path / "notes.wav"
    path.write_text("this is not audio\n" * 20)
    with pytest.raises(AudioDecodeError, match="'notes'"):
        load_audio(str(path), 16000, "notes")
    with pytest.raises(AudioDecodeError):
        audio_duration(str(path), "notes")


def test_truncated_wav_is_an_error_not_a_shorter_recording(write_wav: WavWriter) -> None:
    path = write_wav("cut.wav", seconds=2.0)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(AudioDecodeError, match="truncated"):
        load_audio(str(path), 16000, "cut")


@pytest.mark.parametrize("declared", [0xFFFFFFFF, 0x7FFFF000])
def test_streamed_wav_with_unknown_length_loads(write_wav: WavWriter, declared: int) -> None:
    """Writers on a pipe cannot seek back to fix the sizes; such files are complete, not truncated."""
    path = write_wav("stream.wav", seconds=1.0, kind="noise")
    data = bytearray(path.read_bytes())
    at = data.index(b"data")
    data[at + 4 : at + 8] = declared.to_bytes(4, "little")
    data[4:8] = declared.to_bytes(4, "little")
    path.write_bytes(bytes(data))
    expected = sf.read(write_wav("ref.wav", seconds=1.0, kind="noise"), dtype="float32")[0]
    np.testing.assert_array_equal(load_audio(str(path), 16000, "stream"), without_dc(expected))


def test_truncated_header(write_wav: WavWriter) -> None:
    path = write_wav("head.wav")
    path.write_bytes(path.read_bytes()[:30])
    with pytest.raises(AudioDecodeError, match="'head'"):
        load_audio(str(path), 16000, "head")


def test_corrupt_flac(write_wav: WavWriter) -> None:
    path = write_wav("bad.flac", seconds=2.0, kind="noise")
    data = bytearray(path.read_bytes())
    cut = data[: len(data) // 2]
    path.write_bytes(bytes(cut))
    with pytest.raises(AudioDecodeError, match="'bad'"):
        load_audio(str(path), 16000, "bad")


def test_empty_audio(write_wav: WavWriter) -> None:
    path = write_wav("empty.wav", data=np.zeros(0, dtype=np.float32))
    with pytest.raises(EmptyAudioError, match=r"'empty'.*0 samples"):
        load_audio(str(path), 16000, "empty")
    assert audio_duration(str(path)) == 0.0


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_inf_samples(write_wav: WavWriter, bad: float) -> None:
    data = synth(1.0)[:, 0].copy()
    data[12345] = bad
    path = write_wav("nan.wav", data=data, subtype="FLOAT")
    with pytest.raises(InvalidSamplesError, match=r"'nan'.*frame 12345"):
        load_audio(str(path), 16000, "nan")


def test_implausible_sample_rate_is_a_decode_error(write_wav: WavWriter) -> None:
    # a corrupt header saying 10 Hz would turn 10 s of 16 kHz PCM into 4.4 hours of output
    path = write_wav("slow.wav", seconds=10.0, sample_rate=10, kind="noise")
    with pytest.raises(AudioDecodeError, match=r"'slow'.*sample rate 10 Hz"):
        load_audio(str(path), 16000, "slow")


def test_samples_that_overflow_when_resampled(write_wav: WavWriter) -> None:
    path = write_wav(
        "huge.wav", data=synth(0.5, sample_rate=44100)[:, 0] * 1e38, sample_rate=44100, subtype="FLOAT"
    )
    with pytest.raises(InvalidSamplesError, match=r"'huge'.*too large to resample"):
        load_audio(str(path), 16000, "huge")
    assert np.isfinite(load_audio(str(path), 44100, "huge")).all()  # no resampling: returned as it is


def test_non_ascii_id_and_path(write_wav: WavWriter) -> None:
    path = write_wav("réunion_會議.wav", seconds=0.5)
    assert load_audio(str(path), 16000, "réunion_會議").shape == (8000,)
    with pytest.raises(AudioNotFoundError, match="réunion_會議"):
        load_audio(str(path) + ".missing", 16000, "réunion_會議")


def test_audio_duration_reads_the_header(write_wav: WavWriter) -> None:
    assert audio_duration(str(write_wav("d.wav", seconds=2.5, sample_rate=44100))) == pytest.approx(2.5)
    assert audio_duration(str(write_wav("d.flac", seconds=1.25, sample_rate=8000))) == pytest.approx(1.25)


def test_file_url(write_wav: WavWriter) -> None:
    path = write_wav("u.wav", kind="noise")
    np.testing.assert_array_equal(load_audio(path.as_uri(), 16000, "u"), load_audio(str(path), 16000, "u"))


def test_pipes_are_refused_unless_enabled(write_wav: WavWriter) -> None:
    path = write_wav("p.wav", kind="noise")
    command = f"cat '{path}' |"
    with pytest.raises(AudioError, match="disabled"):
        load_audio(command, 16000, "p")
    got = load_audio(command, 16000, "p", allow_pipes=True)
    np.testing.assert_array_equal(got, load_audio(str(path), 16000, "p"))
    with pytest.raises(AudioDecodeError, match="exited"):
        load_audio("false |", 16000, "p", allow_pipes=True)


def test_a_pipe_command_that_writes_much_to_stderr(write_wav: WavWriter) -> None:
    path = write_wav("p.wav", kind="noise")
    # 1 MB of stderr before any audio: more than a pipe holds, so reading only stdout would hang
    chatty = f"head -c 1000000 /dev/zero >&2; cat '{path}' |"
    np.testing.assert_array_equal(
        load_audio(chatty, 16000, "p", allow_pipes=True), load_audio(str(path), 16000)
    )
    with pytest.raises(AudioDecodeError, match="exited with 3: last words"):
        load_audio("echo first >&2; echo last words >&2; exit 3 |", 16000, "p", allow_pipes=True)


def test_http_url(http_root: tuple[str, Path]) -> None:
    base, root = http_root
    sf.write(root / "r.flac", synth(2.0, sample_rate=8000, channels=2, kind="noise"), 8000)
    url = f"{base}/r.flac"
    assert is_url(url)
    got = load_audio(url, 16000, "r")
    np.testing.assert_array_equal(got, load_audio(str(root / "r.flac"), 16000, "r"))
    assert audio_duration(url, "r") == pytest.approx(2.0)


def test_http_404(http_root: tuple[str, Path]) -> None:
    base, _ = http_root
    with pytest.raises(AudioNotFoundError, match=r"'lost'.*not found"):
        load_audio(f"{base}/lost.wav", 16000, "lost")
    with pytest.raises(AudioNotFoundError, match=r"'lost'.*not found"):
        audio_duration(f"{base}/lost.wav", "lost")


@pytest.mark.corpus
def test_corpus_mixture(corpus: Path) -> None:
    path = corpus / "seriously" / "mixture.wav"
    assert audio_duration(str(path)) == pytest.approx(60.0)
    assert load_audio(str(path), 16000, "mixture").shape == (960000,)
    assert abs(len(load_audio(str(path), 8000, "mixture")) - 480000) <= 1


def test_peak_memory_is_the_output_not_the_decoded_file(write_wav: WavWriter) -> None:
    """20 s of 48 kHz stereo: 15 MB as float64, 1.3 MB as the 16 kHz float32 result."""
    path = write_wav("big.wav", seconds=20.0, sample_rate=48000, channels=2, kind="noise")
    tracemalloc.start()
    try:
        got = load_audio(str(path), 16000, "big", block_frames=8192)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert got.nbytes == 320000 * 4
    assert peak < 2 * got.nbytes + 8192 * 2 * 4 * 4


def test_urls_and_paths() -> None:
    assert is_url("https://host/a.wav") and is_url("s3://b/k.flac") and is_url("file:///x.wav")
    assert is_url("simplecache::s3://b/k.flac")
    assert not is_url("/data/a.wav") and not is_url("rel/a:b.wav") and not is_url("C:/x.wav")


def test_unreachable_url_is_not_called_missing(http_root: tuple[str, Path]) -> None:
    base, _ = http_root
    url = f"http://127.0.0.1:{free_port()}/r.wav"  # a port nobody listens on
    with pytest.raises(AudioNotFoundError, match=r"'r'.*cannot reach URL.*127\.0\.0\.1") as info:
        load_audio(url, 16000, "r")
    assert "not found" not in str(info.value)
    with pytest.raises(AudioNotFoundError, match="cannot reach URL"):
        audio_duration(url, "r")
    with pytest.raises(AudioNotFoundError, match=r"'r'.*HTTP 500"):
        load_audio(f"{base}/status/500/r.wav", 16000, "r")


def test_a_server_that_never_answers_times_out(monkeypatch: pytest.MonkeyPatch) -> None:
    import diar.audio

    monkeypatch.setattr(diar.audio, "HTTP_READ_TIMEOUT", 0.5)
    with socket.socket() as server:  # accepts connections (backlog) but never answers
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        url = f"http://127.0.0.1:{server.getsockname()[1]}/r.wav"
        with pytest.raises(AudioNotFoundError, match=r"'r'.*no answer within 0.5 s"):
            load_audio(url, 16000, "r")
        with pytest.raises(AudioNotFoundError, match=r"'r'.*no answer within 0.5 s"):
            audio_duration(url, "r")


def test_other_fsspec_filesystems(write_wav: WavWriter) -> None:
    import fsspec

    path = write_wav("m.wav", seconds=1.5, kind="noise")
    fsspec.filesystem("memory").pipe("/diar-audio-test/m.wav", path.read_bytes())
    url = "memory://diar-audio-test/m.wav"
    assert audio_duration(url, "m") == pytest.approx(1.5)
    np.testing.assert_array_equal(load_audio(url, 16000, "m"), load_audio(str(path), 16000, "m"))
    with pytest.raises(AudioNotFoundError, match=r"'gone'.*not found"):
        load_audio("memory://diar-audio-test/gone.wav", 16000, "gone")


# --------------------------------------------------------------------------- spooled to disk


@pytest.mark.parametrize(("rate", "channels", "name"), [(16000, 1, "a.wav"), (44100, 2, "b.flac")])
def test_spooled_audio_reads_back_what_load_audio_returns(
    write_wav: WavWriter, tmp_path: Path, rate: int, channels: int, name: str
) -> None:
    path = write_wav(name, seconds=3.0, sample_rate=rate, channels=channels, kind="noise")
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    whole = load_audio(str(path), 16000, "x")
    spooled = spool_audio(str(path), 16000, "x", block_frames=5000, directory=str(spool_dir))
    assert list(spool_dir.iterdir()) == []  # unlinked at once: nothing left behind, even on a kill
    assert len(spooled) == len(whole) and spooled.shape == whole.shape and spooled.nbytes == whole.nbytes
    np.testing.assert_array_equal(np.asarray(spooled), whole)
    for a, b in [(0, 10), (12345, 23456), (-300, None), (len(whole) - 5, len(whole) + 100), (None, None)]:
        np.testing.assert_array_equal(spooled[a:b], whole[a:b])
    assert spooled[len(whole) + 10 :].shape == (0,) and spooled[50:20].shape == (0,)
    part = spooled[100:200]
    part *= 2.0  # a new writable array, not a view of anything shared
    np.testing.assert_array_equal(spooled[100:200], whole[100:200])
    with pytest.raises(TypeError, match="slices"):
        spooled[5]  # type: ignore[index]
    with pytest.raises(ValueError, match="step"):
        spooled[::2]
    spooled.close()


def test_spooled_audio_memory_is_one_block_not_the_recording(write_wav: WavWriter) -> None:
    path = write_wav("long.wav", seconds=30.0, kind="noise")  # 1.9 MB as float32
    tracemalloc.start()
    try:
        with spool_audio(str(path), 16000, "long", block_frames=16000) as spooled:
            _, peak = tracemalloc.get_traced_memory()
            window = spooled[16000 * 10 : 16000 * 20]
    finally:
        tracemalloc.stop()
    assert len(spooled) == 16000 * 30 and len(window) == 16000 * 10
    assert peak < 16000 * 4 * 4  # a few one-second blocks, never the 30 s


def test_spooled_audio_raises_the_errors_of_load_audio(write_wav: WavWriter, tmp_path: Path) -> None:
    cut = write_wav("cut.wav", seconds=2.0)
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])
    noisy = np.sin(np.arange(16000, dtype=np.float32) / 10.0)
    noisy[12000] = np.nan
    bad = write_wav("nan.wav", data=noisy, subtype="FLOAT")
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    with pytest.raises(AudioDecodeError, match="truncated"):
        spool_audio(str(cut), 16000, "cut", directory=str(spool_dir))
    with pytest.raises(InvalidSamplesError, match="frame 12000"):
        spool_audio(str(bad), 16000, "nan", block_frames=4000, directory=str(spool_dir))
    with pytest.raises(AudioNotFoundError):
        spool_audio(str(tmp_path / "missing.wav"), 16000, "missing", directory=str(spool_dir))
    assert list(spool_dir.iterdir()) == []


def test_spooled_audio_reads_from_many_threads(write_wav: WavWriter) -> None:
    from concurrent.futures import ThreadPoolExecutor

    path = write_wav("t.wav", seconds=5.0, kind="noise")
    whole = load_audio(str(path), 16000)
    spans = [(s, s + n) for s, n in np.random.default_rng(0).integers(0, 70000, size=(400, 2))]
    with spool_audio(str(path), 16000) as spooled, ThreadPoolExecutor(4) as pool:
        parts = list(pool.map(lambda span: spooled[span[0] : span[1]], spans))
    for (a, b), part in zip(spans, parts, strict=True):
        np.testing.assert_array_equal(part, whole[a:b])
