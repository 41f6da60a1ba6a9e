"""Benchmark of frame mode with a full-size WavLM-SD: real-time factor and peak memory vs length.

A ``WavLMForAudioFrameClassification(WavLMConfig(num_labels=2))`` with random
weights has the compute of ``microsoft/wavlm-base-plus-sd``; it is saved with
``save_pretrained`` and loaded through the real loader. Each duration runs the
whole frame pipeline as ``diar diarize`` runs it (decoding a 16 kHz WAV with
``diarizer.load``, windows, model, stitching, GE2E chain embeddings,
clustering, post-processing) on synthetic speech-like audio in a fresh
subprocess, so that the peak resident memory (``ru_maxrss``) belongs to that
duration alone. Printed per duration: wall time, real-time factor (wall / audio
seconds, decoding included) with the time per step, the audio's size and how
much of it is held in memory (frame mode spools it to disk), the resident
memory before decoding (model loaded), the peak, and the peak's growth over
the memory before decoding.

    diar bench wavlm --minutes 1 10 60 --threads 2
    python -m diar.benchmarks.wavlm --minutes 1 10

Random weights make the stitching work unlike real speech (probabilities near
0.5 switch often); the model step dominates either way.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16000


def _rss_bytes() -> int:
    """Current resident set size of this process."""
    with open("/proc/self/statm", encoding="ascii") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


def _peak_rss_bytes() -> int:
    """Peak resident set size of this process so far (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def speechlike_blocks(seconds: float, seed: int = 0, block_seconds: float = 60.0) -> Iterator[np.ndarray]:
    """Noise bursts with a syllable-rate envelope and pauses, float32, in blocks of ``block_seconds``."""
    rng = np.random.default_rng(seed)
    n = round(seconds * SAMPLE_RATE)
    block = round(block_seconds * SAMPLE_RATE)
    for start in range(0, n, block):
        m = min(block, n - start)
        envelope = np.repeat(rng.uniform(0.0, 0.3, m // 3200 + 1) * (rng.random(m // 3200 + 1) > 0.3), 3200)
        yield rng.standard_normal(m, dtype=np.float32) * envelope[:m]


def write_speechlike(path: Path, seconds: float, seed: int = 0) -> Path:
    """A 16-bit 16 kHz WAV of :func:`speechlike_blocks`, written a block at a time."""
    import soundfile as sf

    with sf.SoundFile(path, "w", SAMPLE_RATE, 1, "PCM_16") as f:
        for block in speechlike_blocks(seconds, seed):
            f.write(block)
    return path


def save_full_size(directory: Path, seed: int = 0) -> Path:
    """A random full-size WavLM-SD (WavLMConfig defaults, 2 labels) and its extractor in ``directory``."""
    import torch
    from transformers import Wav2Vec2FeatureExtractor, WavLMConfig, WavLMForAudioFrameClassification

    torch.manual_seed(seed)
    config = WavLMConfig()
    config.num_labels = 2
    WavLMForAudioFrameClassification(config).save_pretrained(directory)
    Wav2Vec2FeatureExtractor(
        feature_size=1,
        sampling_rate=SAMPLE_RATE,
        padding_value=0.0,
        do_normalize=True,
        return_attention_mask=True,
    ).save_pretrained(directory)
    return directory


def run_one(minutes: float, model_dir: str, overrides: list[str]) -> dict[str, object]:
    """Diarize ``minutes`` of synthetic audio in this process; figures as a dict."""
    from diar.config import load_config
    from diar.pipelines import RecordingInput, build_diarizer
    from diar.pipelines.base import timed

    config_path = Path(__file__).resolve().parents[2] / "configs" / "wavlm-sd.yaml"
    config = load_config(
        config_path if config_path.is_file() else None,
        ["mode=frame", f"frame_model.model={model_dir}", *overrides],
    )
    t_load = time.perf_counter()
    diarizer = build_diarizer(config)
    load_s = time.perf_counter() - t_load
    steps: dict[str, float] = {}

    def hook(step: str, seconds: float) -> None:
        steps[step] = steps.get(step, 0.0) + seconds

    with tempfile.TemporaryDirectory(prefix="wavlm-bench-audio-") as tmp:
        path = write_speechlike(Path(tmp) / "bench.wav", minutes * 60.0)
        rss_before = _rss_bytes()
        t0 = time.perf_counter()
        c0 = time.process_time()
        # as `diar diarize` and the job do: decoded (here spooled to disk) by the diarizer
        with timed(hook, "load"):
            audio = diarizer.load(str(path), "bench")
        annotation = diarizer.apply(RecordingInput("bench", audio), hook)
        cpu = time.process_time() - c0
        wall = time.perf_counter() - t0
        peak = _peak_rss_bytes()
    seconds = len(audio) / SAMPLE_RATE
    audio_in_memory = audio.nbytes if isinstance(audio, np.ndarray) else 0
    return {
        "minutes": minutes,
        "threads": config.num_threads,
        "window": config.frame_model.window,
        "hop": config.frame_model.hop,
        "batch_size": getattr(diarizer, "batch_size", config.frame_model.batch_size),
        "device": config.frame_model.device,
        "autocast": config.frame_model.autocast,
        "wall_s": round(wall, 2),
        "rtf": round(wall / seconds, 4),
        # CPU seconds per audio second and thread: the RTF this run would have on idle cores
        "cpu_rtf_per_thread": round(cpu / seconds / config.num_threads, 4),
        "steps_rtf": {k: round(v / seconds, 4) for k, v in steps.items()},
        "audio_mib": round(audio.nbytes / 2**20, 1),
        "audio_in_memory_mib": round(audio_in_memory / 2**20, 1),
        "rss_before_mib": round(rss_before / 2**20, 1),
        "load_s": round(load_s, 2),
        "peak_rss_mib": round(peak / 2**20, 1),
        "peak_growth_mib": round(max(0, peak - rss_before) / 2**20, 1),
        "speakers": len(annotation.speakers),
        "turns": len(annotation),
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="diar bench wavlm",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--minutes", type=float, nargs="+", default=[1.0, 10.0, 60.0], help="audio durations")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (num_threads)")
    parser.add_argument("--device", default="cpu", help="frame_model.device: cpu, cuda or auto")
    parser.add_argument("--model-dir", help="a saved WavLM-SD directory (default: a random full-size one)")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="config overrides"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object per duration only")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    overrides = [
        f"num_threads={args.threads}",
        f"frame_model.device={args.device}",
        f"embedding.device={'cpu' if args.device == 'cpu' else 'auto'}",
        *args.overrides,
    ]
    if args.child:
        (minutes,) = args.minutes
        sys.stdout.write(json.dumps(run_one(minutes, args.model_dir, overrides)) + "\n")
        return 0
    with tempfile.TemporaryDirectory(prefix="wavlm-bench-") as tmp:
        model_dir = args.model_dir or str(save_full_size(Path(tmp)))
        results = []
        for minutes in args.minutes:
            cmd = [sys.executable, "-m", "diar.benchmarks.wavlm", "--child", "--minutes", str(minutes)]
            cmd += ["--threads", str(args.threads), "--device", args.device, "--model-dir", model_dir]
            for item in args.overrides:
                cmd += ["--set", item]
            env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS=str(args.threads))
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
            if proc.returncode != 0:
                sys.stderr.write(proc.stderr)
                return proc.returncode
            result = json.loads(proc.stdout.strip().splitlines()[-1])
            results.append(result)
            if args.json:
                sys.stdout.write(json.dumps(result) + "\n")
            else:
                steps = " ".join(f"{k}={v:.3f}" for k, v in result["steps_rtf"].items())
                sys.stdout.write(
                    f"{result['minutes']:>6g} min  wall {result['wall_s']:>8.1f} s  RTF {result['rtf']:.3f} "
                    f"({steps}; CPU s / audio s / thread {result['cpu_rtf_per_thread']:.3f})  "
                    f"audio {result['audio_mib']:.0f} MiB ({result['audio_in_memory_mib']:.0f} in memory), "
                    f"RSS before {result['rss_before_mib']:.0f} MiB, peak {result['peak_rss_mib']:.0f} MiB, "
                    f"growth {result['peak_growth_mib']:.0f} MiB\n"
                )
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
