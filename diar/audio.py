"""Load a recording as float32 mono at a given sample rate.

Sources are local paths, ``file://`` URLs, any other fsspec URL (``http(s)://``
through fsspec's HTTP filesystem; ``s3://``, ``gs://`` when their backend is
installed) and, only when explicitly enabled, Kaldi pipe commands (``cmd |``).

Decoding goes through soundfile (WAV, FLAC, OGG, MP3, ... whatever libsndfile
reads). The file is read in blocks of float32 frames; each block is mixed down
to mono (mean of the channels), checked for NaN/Inf and fed to a streaming soxr
resampler, so a 3-hour recording never exists as a float64 or multi-channel
array. :func:`load_audio` holds the float32 mono output in memory;
:func:`spool_audio` writes it to a temporary file and reads ranges of it back
(:class:`SpooledAudio`), for pipelines that go through a recording window by
window with memory independent of its length.

Every failure is a typed :class:`~diar.errors.AudioError` naming the recording:

* :class:`AudioNotFoundError`: no such file, or the URL answers 404;
* :class:`AudioDecodeError`: zero-byte, truncated or corrupt file, text named ``.wav``
  (a file holding less audio than its header declares, in every container
  :mod:`diar.containers` reads, is truncated: libsndfile alone would read it as shorter);
* :class:`EmptyAudioError`: a valid file with 0 samples;
* :class:`InvalidSamplesError`: NaN or infinite samples.

All-zero (silent) audio is valid. A sample rate outside [:data:`MIN_SAMPLE_RATE`,
:data:`MAX_SAMPLE_RATE`] is a corrupt header. The recording's DC offset (the mean of its
samples) is removed, for every model: a constant offset is no sound, but it shifts the
VAD's and the embedders' inputs (an offset of 0.5 took DER from ~0 to 0.52).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import math
import os
import re
import shutil
import stat
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from typing import IO, Any

import numpy as np
import soundfile as sf
import soxr

from diar.containers import read_header
from diar.errors import (
    AudioDecodeError,
    AudioError,
    AudioNotFoundError,
    EmptyAudioError,
    InvalidSamplesError,
)

logger = logging.getLogger(__name__)

#: Frames decoded per block (about 65 s at 16 kHz).
BLOCK_FRAMES = 1 << 20
#: soxr quality ("HQ" or "VHQ"); VHQ costs ~2x the CPU for no audible gain at speech rates.
RESAMPLE_QUALITY = "HQ"
#: Lowest sample rate accepted. Below it a header is corrupt rather than speech, and
#: resampling its frames to 16 kHz could ask for more memory than the machine has.
MIN_SAMPLE_RATE = 1000
#: Highest sample rate accepted (the fastest studio converters run at 768 kHz); a header
#: claiming more (100 MHz, 2 GHz) is corrupt, and resampling it would leave no samples.
MAX_SAMPLE_RATE = 768_000
#: Remote objects up to this size are spooled in memory, larger ones to a temporary file.
_SPOOL_MAX_BYTES = 64 << 20
#: HTTP(S) timeouts in seconds: to connect, and between two reads of the body. There is no
#: limit on the whole transfer (aiohttp's default of 5 minutes would fail large files on slow
#: links), but a server that stops sending fails the recording instead of hanging its shard.
HTTP_CONNECT_TIMEOUT = 30.0
HTTP_READ_TIMEOUT = 60.0


_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*(::[A-Za-z][A-Za-z0-9+.-]*)*://")


def is_url(source: str) -> bool:
    """True for ``scheme://...`` sources (fsspec URLs, chained ones like ``simplecache::s3://`` too)."""
    return _URL.match(source) is not None


def is_pipe(source: str) -> bool:
    """True for a Kaldi pipe command (``cmd args |``)."""
    return source.rstrip().endswith("|")


def local_path(source: str) -> str | None:
    """The local file path of ``source`` (plain path or ``file://`` URL), or None if remote."""
    if source.startswith("file://"):
        from urllib.parse import unquote, urlparse

        return unquote(urlparse(source).path)
    if is_url(source) or is_pipe(source):
        return None
    return source


@contextlib.contextmanager
def _open_source(source: str, reco_id: str | None, allow_pipes: bool) -> Iterator[str | IO[bytes]]:
    """Yield something ``sf.SoundFile`` can open: a local path or a seekable binary file.

    Remote objects are copied (streamed, in 1 MiB chunks) to a spooled temporary
    file: soundfile needs to seek, and many HTTP servers do not answer range requests.
    """
    local = local_path(source)
    if local is not None:
        _check_local_file(local, reco_id, source)
        yield local
        return
    with tempfile.SpooledTemporaryFile(max_size=_SPOOL_MAX_BYTES) as spool:
        if is_pipe(source):
            _run_pipe(source, reco_id, allow_pipes, spool)
        else:
            _download(source, reco_id, spool)
        if spool.tell() == 0:
            raise AudioDecodeError(reco_id, source, "zero-byte file")
        spool.seek(0)
        yield spool  # type: ignore[misc]


def _check_local_file(path: str, reco_id: str | None, source: str) -> None:
    """Raise the AudioError that says what ``path`` is when it is not a readable, non-empty file
    (missing, a broken link or a link loop, a directory, a device, a FIFO, a socket, ...)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            raise AudioNotFoundError(
                reco_id, source, "is a broken symbolic link (its target does not exist)"
            ) from None
        raise AudioNotFoundError(reco_id, source, "no such file") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise AudioNotFoundError(
                reco_id, source, "is a symbolic link loop (too many levels of symbolic links)"
            ) from None
        raise AudioNotFoundError(reco_id, source, f"cannot read the file: {exc.strerror or exc}") from None
    except ValueError as exc:  # an embedded NUL byte
        raise AudioNotFoundError(reco_id, source, f"not a valid path ({exc})") from None
    if stat.S_ISDIR(st.st_mode):
        raise AudioNotFoundError(reco_id, source, "is a directory, not an audio file")
    if not stat.S_ISREG(st.st_mode):
        from diar.outputs import kind_of

        # reading a device or a FIFO could block forever or never end
        raise AudioNotFoundError(reco_id, source, f"is {kind_of(st.st_mode)}, not an audio file")
    if st.st_size == 0:
        raise AudioDecodeError(reco_id, source, "zero-byte file")
    if not os.access(path, os.R_OK):
        raise AudioNotFoundError(reco_id, source, "file is not readable (permission denied)")


def check_sample_rate(rate: float, reco_id: str | None, source: str) -> None:
    """Raise AudioDecodeError for a header rate outside [MIN_SAMPLE_RATE, MAX_SAMPLE_RATE]."""
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:  # NaN too
        shown = int(rate) if math.isfinite(rate) and rate == int(rate) else rate
        raise AudioDecodeError(
            reco_id,
            source,
            f"implausible sample rate {shown} Hz in the header (allowed: {MIN_SAMPLE_RATE} to "
            f"{MAX_SAMPLE_RATE} Hz); the header is corrupt",
        )


def _filesystem(url: str, reco_id: str | None) -> tuple[Any, str]:
    """fsspec filesystem and path of ``url``; HTTP(S) with :data:`HTTP_READ_TIMEOUT` and no total limit."""
    import fsspec

    options: dict[str, Any] = {}
    if url.startswith(("http://", "https://")):
        import aiohttp

        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=HTTP_CONNECT_TIMEOUT, sock_read=HTTP_READ_TIMEOUT
        )
        options["client_kwargs"] = {"timeout": timeout}
    try:
        fs, path = fsspec.core.url_to_fs(url, **options)
    except (ImportError, ValueError) as exc:
        raise AudioNotFoundError(reco_id, url, f"cannot open URL ({exc})") from exc
    return fs, path


def _download(url: str, reco_id: str | None, out: IO[bytes]) -> None:
    fs, path = _filesystem(url, reco_id)
    # HTTP: stream the body; random access would need range requests.
    kwargs: dict[str, Any] = {"block_size": 0} if "http" in fs.protocol else {}
    try:
        with fs.open(path, "rb", **kwargs) as f:
            shutil.copyfileobj(f, out, 1 << 20)
    except Exception as exc:  # aiohttp / botocore errors have no common base
        raise _url_error(reco_id, url, exc) from exc


def _url_error(reco_id: str | None, url: str, exc: BaseException) -> AudioNotFoundError:
    """The error for a URL that cannot be read, saying whether it is missing or unreachable.

    fsspec's HTTP filesystem turns *every* failure (404, refused connection, DNS,
    timeout) into ``FileNotFoundError``; the cause it chains tells them apart.
    """
    cause = exc.__cause__ if isinstance(exc, FileNotFoundError) and exc.__cause__ is not None else exc
    status = getattr(cause, "status", None)
    if status == 404 or (isinstance(exc, FileNotFoundError) and cause is exc):
        return AudioNotFoundError(reco_id, url, "not found (404 or missing object)")
    if isinstance(status, int):
        reason = " ".join(str(getattr(cause, "message", "")).split())
        return AudioNotFoundError(reco_id, url, f"cannot read URL: HTTP {status} {reason}".rstrip())
    if isinstance(cause, TimeoutError):
        return AudioNotFoundError(
            reco_id,
            url,
            f"cannot reach URL: no answer within {HTTP_READ_TIMEOUT:g} s ({type(cause).__name__})",
        )
    if isinstance(cause, OSError) and not isinstance(cause, FileNotFoundError):
        # refused or reset connections and DNS failures are all OSErrors here
        detail = " ".join(str(cause).split()) or type(cause).__name__
        return AudioNotFoundError(reco_id, url, f"cannot reach URL: {detail}")
    if isinstance(exc, FileNotFoundError) or re.search(r"\b404\b|Not Found", str(cause)):
        return AudioNotFoundError(reco_id, url, "not found (404 or missing object)")
    return AudioNotFoundError(reco_id, url, f"cannot read URL: {type(cause).__name__}: {cause}")


def _run_pipe(command: str, reco_id: str | None, allow_pipes: bool, out: IO[bytes]) -> None:
    if not allow_pipes:
        raise AudioError(
            reco_id, command, "pipe commands ('cmd |') are disabled; enable them explicitly (allow_pipes)"
        )
    cmd = command.rstrip()[:-1].strip()
    # stdout is copied as it comes (never whole in memory); stderr goes to a file, so a
    # chatty command cannot block on a full pipe while we read its stdout
    with tempfile.TemporaryFile() as stderr:
        proc = subprocess.Popen(cmd, shell=True, stdout=subprocess.PIPE, stderr=stderr)
        assert proc.stdout is not None
        with proc.stdout:
            shutil.copyfileobj(proc.stdout, out, 1 << 20)
        returncode = proc.wait()
        if returncode != 0:
            stderr.seek(0)
            err = stderr.read().decode("utf-8", "replace").strip().splitlines()
            raise AudioDecodeError(
                reco_id, command, f"pipe command exited with {returncode}: {err[-1] if err else ''}"
            )


def _check_header(f: IO[bytes] | str, reco_id: str | None, source: str) -> None:
    """Raise AudioDecodeError for a header rate outside the allowed range, or for a file that
    holds less audio than its header declares, in every container :mod:`diar.containers` reads.

    libsndfile silently clamps a cut WAV, RF64, W64, AIFF, AU, ... to the bytes present, which
    would diarize half a recording without a word, and fails a rate of 0 with an internal
    message; the header is read here first. Sizes that streaming writers leave unknown are
    accepted.
    """
    header = read_header(f)
    if header is None:
        return
    if header.sample_rate is not None:
        check_sample_rate(header.sample_rate, reco_id, source)
    if header.truncated:
        raise AudioDecodeError(reco_id, source, f"truncated audio: {header.shortfall()}")


def _open_soundfile(handle: str | IO[bytes], reco_id: str | None, source: str) -> sf.SoundFile:
    try:
        return sf.SoundFile(handle)
    except sf.LibsndfileError as exc:
        raise AudioDecodeError(reco_id, source, f"not decodable audio ({exc.error_string})") from exc
    except (RuntimeError, TypeError) as exc:
        raise AudioDecodeError(reco_id, source, f"not decodable audio ({exc})") from exc


def audio_duration(source: str, reco_id: str | None = None, allow_pipes: bool = False) -> float:
    """Duration in seconds from the file header only (no decoding of samples).

    Remote objects are read through random access (range requests) when the
    server supports it, else downloaded; pipes are run to completion.
    """
    local = local_path(source)
    if local is None and not is_pipe(source):
        seconds = _remote_duration(source, reco_id)
        if seconds is not None:
            return seconds
    with _open_source(source, reco_id, allow_pipes) as handle:
        header = read_header(handle)
        if header is not None and header.sample_rate is not None:
            check_sample_rate(header.sample_rate, reco_id, source)
        with _open_soundfile(handle, reco_id, source) as f:
            check_sample_rate(int(f.samplerate), reco_id, source)
            return float(f.frames) / float(f.samplerate)


def _remote_duration(url: str, reco_id: str | None) -> float | None:
    """Header-only duration of a remote object, or None when the server needs a full download."""
    fs, path = _filesystem(url, reco_id)
    try:
        # small blocks: a header needs kilobytes, and servers without range requests
        # send the first block of the body whatever is asked (fsspec's default is 5 MB)
        with fs.open(path, "rb", block_size=1 << 16) as remote, sf.SoundFile(remote) as f:
            if MIN_SAMPLE_RATE <= f.samplerate <= MAX_SAMPLE_RATE:
                return float(f.frames) / float(f.samplerate)
    except OSError as exc:  # missing, unreachable, timed out: a download would fail the same way
        raise _url_error(reco_id, url, exc) from exc
    except Exception as exc:  # no range support, odd backends: fall back to a download
        logger.debug("header-only read of %s failed (%s); downloading it", url, exc)
    return None


def load_audio(
    source: str,
    sample_rate: int,
    reco_id: str | None = None,
    allow_pipes: bool = False,
    block_frames: int = BLOCK_FRAMES,
    quality: str = RESAMPLE_QUALITY,
) -> np.ndarray:
    """Decode ``source`` to float32 mono at ``sample_rate`` Hz.

    Args:
        source: local path, fsspec URL, or (with ``allow_pipes``) a ``cmd |`` pipe.
        sample_rate: output rate; other rates are resampled with soxr.
        reco_id: recording id, used in error messages.
        allow_pipes: run ``cmd |`` sources through the shell (off by default).
        block_frames: frames decoded per block.
        quality: soxr quality, "HQ" (default) or "VHQ".

    Returns:
        shape (num_samples,), float32, mono (mean of the channels).

    Raises:
        AudioNotFoundError, AudioDecodeError, EmptyAudioError, InvalidSamplesError.
    """
    level = _Level()
    with _decoding(source, sample_rate, reco_id, allow_pipes, block_frames, quality) as (f, chunks):
        # Preallocate the output (plus slack for resampler rounding) instead of concatenating chunks.
        expected = int(np.ceil(f.frames * sample_rate / max(f.samplerate, 1))) + 16
        out = np.empty(max(expected, 0), dtype=np.float32)  # shape: (num_samples + slack,)
        n = 0
        for chunk in chunks:
            if n + len(chunk) > len(out):
                out = np.resize(out, max(2 * len(out), n + len(chunk)))
            out[n : n + len(chunk)] = chunk
            level.add(chunk)
            n += len(chunk)
    # Drop the slack only when it is large (np.resize may have doubled the buffer).
    out = out[:n].copy() if len(out) - n > (1 << 18) else out[:n]
    if level.offset:
        out -= np.float32(level.offset)
    return out


def spool_audio(
    source: str,
    sample_rate: int,
    reco_id: str | None = None,
    allow_pipes: bool = False,
    block_frames: int = BLOCK_FRAMES,
    quality: str = RESAMPLE_QUALITY,
    directory: str | None = None,
) -> SpooledAudio:
    """Decode ``source`` like :func:`load_audio`, into a temporary file instead of memory.

    Decoding, checks and errors are those of :func:`load_audio`; only one block
    of samples is in memory at a time, and the result reads ranges of samples
    back from disk, so diarizing a recording window by window needs memory
    independent of its length.

    Args:
        directory: where the temporary file goes (default: ``tempfile.gettempdir()``).

    Returns:
        the samples, float32 mono at ``sample_rate``, in an already unlinked file.
    """
    spool = tempfile.TemporaryFile(dir=directory)  # closed by the SpooledAudio, or below on failure
    level = _Level()
    try:
        n = 0
        with _decoding(source, sample_rate, reco_id, allow_pipes, block_frames, quality) as (_, chunks):
            for chunk in chunks:
                spool.write(chunk.tobytes())
                level.add(chunk)
                n += len(chunk)
        spool.flush()
    except BaseException:
        spool.close()
        raise
    return SpooledAudio(spool, n, sample_rate, offset=level.offset)


class _Level:
    """The DC offset of a recording, from its decoded blocks: their mean (float64 sums).

    0 when subtracting it could overflow float32 (samples near its limit are no real audio).
    """

    def __init__(self) -> None:
        self.total = 0.0
        self.count = 0
        self.peak = 0.0

    def add(self, chunk: np.ndarray) -> None:
        if len(chunk):
            self.total += float(np.sum(chunk, dtype=np.float64))
            self.count += len(chunk)
            self.peak = max(self.peak, float(np.max(np.abs(chunk))))

    @property
    def offset(self) -> float:
        mean = self.total / self.count if self.count else 0.0
        safe = self.peak + abs(mean) < float(np.finfo(np.float32).max) / 2
        return mean if safe and np.isfinite(mean) else 0.0


class SpooledAudio:
    """Float32 mono samples in a temporary file, read back by range (see :func:`spool_audio`).

    Indexing with a slice reads those samples from the file (``audio[a:b]`` is
    a new writable array; reads from several threads are safe); ``len(audio)`` is the number of samples and
    ``np.asarray(audio)`` reads them all. The file is unlinked when created and
    goes away with :meth:`close` or when the object is garbage collected.

    Attributes:
        sample_rate: samples per second.
        offset: the recording's DC offset, subtracted from every sample read (as
            :func:`load_audio` subtracts it).
    """

    dtype = np.dtype(np.float32)

    def __init__(self, file: IO[bytes], num_samples: int, sample_rate: int, offset: float = 0.0) -> None:
        self._file = file
        self._lock = threading.Lock()  # seek + read is one step for each reader thread
        self._num_samples = num_samples
        self.sample_rate = sample_rate
        #: subtracted from every sample read: the recording's DC offset
        self.offset = np.float32(offset)

    def __len__(self) -> int:
        return self._num_samples

    @property
    def shape(self) -> tuple[int]:
        return (self._num_samples,)

    @property
    def nbytes(self) -> int:
        """Bytes the samples take on disk (none of them are held in memory)."""
        return self._num_samples * self.dtype.itemsize

    def __getitem__(self, index: slice) -> np.ndarray:
        if not isinstance(index, slice):
            raise TypeError(f"SpooledAudio is indexed by slices only, got {type(index).__name__}")
        start, stop, step = index.indices(self._num_samples)
        if step != 1:
            raise ValueError(f"SpooledAudio slices must have step 1, got {step}")
        return self.read(start, stop)

    def read(self, start: int, stop: int) -> np.ndarray:
        """Samples ``[start, stop)`` (clipped to the recording), shape (n,) float32."""
        start, stop = max(0, start), min(stop, self._num_samples)
        out = np.empty(max(0, stop - start), dtype=self.dtype)
        view = out.data.cast("B")
        offset, done = start * self.dtype.itemsize, 0
        with self._lock:
            self._file.seek(offset)
            while done < len(view):
                got = self._file.readinto(view[done:])  # type: ignore[attr-defined]
                if not got:
                    raise OSError(f"spooled audio file ended at byte {offset + done} of {self.nbytes}")
                done += got
        if self.offset:
            out -= self.offset
        return out

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        samples = self.read(0, self._num_samples)
        return samples if dtype is None else samples.astype(dtype, copy=False)

    def close(self) -> None:
        """Delete the temporary file."""
        self._file.close()

    def __enter__(self) -> SpooledAudio:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        seconds = self._num_samples / self.sample_rate
        return f"SpooledAudio({self._num_samples} samples, {seconds:.1f} s at {self.sample_rate} Hz)"


#: A recording's samples: in memory (:func:`load_audio`) or on disk (:func:`spool_audio`).
Waveform = np.ndarray | SpooledAudio


@contextlib.contextmanager
def _decoding(
    source: str, sample_rate: int, reco_id: str | None, allow_pipes: bool, block: int, quality: str
) -> Iterator[tuple[sf.SoundFile, Iterator[np.ndarray]]]:
    """The open, checked sound file of ``source`` and the blocks :func:`_decode` makes of it."""
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    if quality not in ("HQ", "VHQ"):
        raise ValueError(f"quality must be 'HQ' or 'VHQ', got {quality!r}")
    with _open_source(source, reco_id, allow_pipes) as handle:
        _check_header(handle, reco_id, source)
        with _open_soundfile(handle, reco_id, source) as f:
            yield f, _decode(f, sample_rate, reco_id, source, block, quality)


def _decode(
    f: sf.SoundFile, sample_rate: int, reco_id: str | None, source: str, block: int, quality: str
) -> Iterator[np.ndarray]:
    """Yield the float32 mono samples of ``f`` at ``sample_rate``, a block at a time.

    A truncated or corrupt file raises once decoding reaches the damage, after
    the blocks before it were yielded: callers keep nothing of a failed decode.
    """
    in_rate, declared = int(f.samplerate), int(f.frames)
    check_sample_rate(in_rate, reco_id, source)
    if declared == 0:
        raise EmptyAudioError(reco_id, source, "audio has 0 samples")
    resampler = (
        soxr.ResampleStream(in_rate, sample_rate, 1, dtype="float32", quality=quality)
        if in_rate != sample_rate
        else None
    )
    n_in = n_out = 0

    def checked(chunk: np.ndarray) -> np.ndarray:
        if resampler is not None and not np.isfinite(chunk).all():
            # finite input near the float32 limit can overflow in the resampler's filter
            raise InvalidSamplesError(
                reco_id,
                source,
                f"samples too large to resample (overflow near frame {n_in}); rescale the audio",
            )
        return chunk

    while True:
        try:
            data = f.read(frames=block, dtype="float32", always_2d=True)  # shape: (frames, channels)
        except (sf.LibsndfileError, RuntimeError) as exc:
            raise AudioDecodeError(
                reco_id, source, f"corrupt audio after {n_in} of {declared} frames ({exc})"
            ) from exc
        if len(data) == 0:
            break
        mono = data[:, 0] if data.shape[1] == 1 else data.mean(axis=1, dtype=np.float32)  # shape: (frames,)
        if not np.isfinite(mono).all():
            bad = n_in + int(np.flatnonzero(~np.isfinite(mono))[0])
            raise InvalidSamplesError(
                reco_id, source, f"NaN or infinite sample at frame {bad} ({bad / in_rate:.3f} s)"
            )
        n_in += len(data)
        chunk = checked(resampler.resample_chunk(mono) if resampler is not None else mono)
        n_out += len(chunk)
        yield chunk
        if len(data) < block:
            break
    if n_in == 0:
        raise EmptyAudioError(reco_id, source, "audio has 0 samples")
    # MP3 lengths are estimates when the stream has no Xing/Info header: tolerate a small shortfall.
    tolerated = declared // 20 if f.format == "MP3" or str(f.format).startswith("MPEG") else 0
    if n_in < declared - tolerated:
        raise AudioDecodeError(
            reco_id, source, f"truncated audio: header declares {declared} frames, decoded {n_in}"
        )
    if resampler is not None:
        tail = checked(resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True))
        n_out += len(tail)
        yield tail
    logger.debug(
        "loaded %s: %d frames at %d Hz -> %d samples at %d Hz", source, n_in, in_rate, n_out, sample_rate
    )
