"""Helpers shared by several test modules: free local ports, tiny model checkpoints, a
diarizer factory that must not be called. Fixtures live in conftest.py; the job's test
doubles and corpora in job_helpers.py."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

#: 3D-Speaker's CAMPPlus layout at toy sizes, random weights (tests/data/campplus/README.md).
#: The repository, and the test data beside this file (tiny checkpoints and their expected outputs).
REPO = Path(__file__).resolve().parents[1]
TEST_DATA = Path(__file__).resolve().parent / "data"
TINY_CAMPPLUS = TEST_DATA / "campplus" / "tiny_campplus.pt"


def free_ports(count: int) -> list[int]:
    """``count`` distinct local TCP ports nobody listens on (now: connections are refused)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()


def free_port() -> int:
    """A local TCP port nobody listens on (connections are refused)."""
    return free_ports(1)[0]


def never_built(config: Any) -> Any:
    """A diarizer factory for runs that must not build a model (a rerun of a finished job,
    one that stops before any work)."""
    raise AssertionError("no model may be built here")


def tiny_wavlm_config(num_labels: int = 2) -> Any:
    """``transformers.WavLMConfig`` at toy sizes."""
    import transformers

    return transformers.WavLMConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(16, 16, 16),
        conv_kernel=(10, 4, 4),
        conv_stride=(5, 8, 8),
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        num_buckets=32,
        max_bucket_distance=100,
        num_labels=num_labels,
    )


def save_tiny_wavlm(directory: Path, do_normalize: bool, seed: int = 0, num_labels: int = 2) -> Path:
    """A random WavLMForAudioFrameClassification and its feature extractor in save_pretrained layout."""
    import torch
    import transformers

    torch.manual_seed(seed)
    model = transformers.WavLMForAudioFrameClassification(tiny_wavlm_config(num_labels)).eval()
    # random weights give probabilities near 0.5 only; a larger classifier spreads them over both sides
    with torch.no_grad():
        model.classifier.weight.mul_(20.0)
    model.save_pretrained(directory)
    transformers.Wav2Vec2FeatureExtractor(
        feature_size=1,
        sampling_rate=16000,
        padding_value=0.0,
        do_normalize=do_normalize,
        return_attention_mask=True,
    ).save_pretrained(directory)
    return directory


def sample_clip(dest: Path, seconds: float) -> Path:
    """A data set (wav.scp, ref.rttm, uem) in ``dest`` of the bundled sample's first ``seconds``,
    as 16-bit WAV, its reference turns cut there: a short real recording for benchmark tests."""
    import soundfile as sf

    sample = REPO / "diar" / "data" / "sample"
    audio, rate = sf.read(sample / "sim01_2spk.flac", dtype="int16")
    audio = audio[: round(seconds * rate)]
    dest.mkdir(parents=True, exist_ok=True)
    sf.write(dest / "clip.wav", audio, rate, subtype="PCM_16")
    (dest / "wav.scp").write_text("sim01_2spk clip.wav\n")
    turns = []
    for line in (sample / "ref.rttm").read_text().splitlines():
        fields = line.split()
        start, end = float(fields[3]), min(float(fields[3]) + float(fields[4]), seconds)
        if start < end:
            fields[3:5] = [f"{start:.3f}", f"{end - start:.3f}"]
            turns.append(" ".join(fields) + "\n")
    (dest / "ref.rttm").write_text("".join(turns))
    (dest / "uem").write_text(f"sim01_2spk 1 0.000 {seconds:.3f}\n")
    return dest
