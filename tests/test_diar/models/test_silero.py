"""silero-vad speech detection on real speech, silence, noise and edge cases."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch
from helpers import REPO

from diar.models.base import VADS, VoiceActivityDetector
from diar.models.silero import SileroVAD

SAMPLE = REPO / "diar" / "data" / "sample"


@pytest.fixture(scope="module")
def vad() -> SileroVAD:
    return VADS.get("silero")(num_threads=2)


def reference_speech(start: float, end: float) -> np.ndarray:
    """Frame mask at 10 ms of reference speech in [start, end) of the sample."""
    mask = np.zeros(round((end - start) * 100), dtype=bool)
    for line in (SAMPLE / "ref.rttm").read_text().splitlines():
        f = line.split()
        s, e = float(f[3]) - start, float(f[3]) + float(f[4]) - start
        mask[max(0, int(s * 100)) : max(0, int(e * 100))] = True
    return mask


def test_finds_the_speech_of_the_sample(vad: SileroVAD) -> None:
    assert isinstance(vad, VoiceActivityDetector)
    wav = sf.read(SAMPLE / "sim01_2spk.flac", dtype="float32", stop=16000 * 30)[0]
    regions = vad(wav)
    assert regions.dtype == np.int64 and regions.ndim == 2 and regions.shape[1] == 2
    assert (regions[:, 1] > regions[:, 0]).all() and (regions[1:, 0] >= regions[:-1, 1]).all()
    hyp = np.zeros(3000, dtype=bool)
    for s, e in regions:
        hyp[s // 160 : e // 160] = True
    ref = reference_speech(0, 30)
    agreement = (hyp == ref).mean()
    assert agreement > 0.85, agreement


def test_silence_noise_and_empty_input(vad: SileroVAD) -> None:
    assert vad(np.zeros(16000 * 3, dtype=np.float32)).shape == (0, 2)
    noise = np.random.default_rng(0).standard_normal(16000 * 3).astype(np.float32) * 0.001
    assert vad(noise).shape == (0, 2)
    assert vad(np.zeros(0, dtype=np.float32)).shape == (0, 2)
    assert vad(np.zeros(100, dtype=np.float32)).shape == (0, 2)


def test_regions_stay_inside_the_audio(vad: SileroVAD) -> None:
    wav = sf.read(SAMPLE / "sim01_2spk.flac", dtype="float32", start=16000 * 10, stop=16000 * 12)[0]
    regions = vad(wav)
    assert len(regions) > 0
    assert regions.min() >= 0 and regions.max() <= len(wav)


def test_threads_are_set_after_importing_silero() -> None:
    SileroVAD(num_threads=2)
    assert torch.get_num_threads() == 2
    with pytest.raises(ValueError, match="threshold"):
        SileroVAD(threshold=1.5)
