"""Benchmark of the offline default pipeline: accuracy and CPU speed.

For each data set (by default ../shared/corpus/sim, seriously and ami30) it prints, per
recording and in total: DER at collar 0 and 0.25 s per side (overlapped speech scored),
the estimated vs true speaker count, and the CPU real-time factor (wall seconds / audio
seconds), split by pipeline step as reported through the step hook (frame mode:
segmentation, features, embeddings, clustering, rendering), then the whole pipeline's
real-time factor with the models' loading and the audio's decoding included. Torch runs
with ``--threads`` threads (default 1).

With ``--bound`` (mode frame) it also prints the frame model's bound: the DER when every
local speaker takes the reference speaker it overlaps most (an oracle clustering), rendered
as usual: what the frame model's local speakers and speaker count allow, whatever the
embeddings and the clustering.

    diar bench default
    diar bench default --threads 2 --set clustering.method=agglomerative
    diar bench default --wav-scp my/wav.scp --rttm my/ref.rttm --uem my/uem
    diar bench default --bound
    python -m diar.benchmarks.default --repeat 3
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus"


@dataclass
class DataSet:
    """Recordings to diarize and their reference."""

    name: str
    sources: dict[str, str]
    rttm: str
    uem: str | None = None
    times: dict[str, float] = field(default_factory=lambda: defaultdict(float))


def say(line: str = "") -> None:
    """Benchmarks print their figures (library code logs instead)."""
    sys.stdout.write(line + "\n")


def default_datasets() -> list[DataSet]:
    """../shared/corpus/sim, seriously and ami30, when present."""
    out = []
    sim = CORPUS / "sim"
    if (sim / "wav.scp").is_file():
        from diar.manifests import read_wav_scp

        out.append(DataSet("sim", read_wav_scp(sim / "wav.scp"), str(sim / "ref.rttm"), str(sim / "uem")))
    seriously = CORPUS / "seriously"
    if (seriously / "mixture.wav").is_file():
        out.append(
            DataSet("seriously", {"mixture": str(seriously / "mixture.wav")}, str(seriously / "mixture.rttm"))
        )
    ami = CORPUS / "ami30"
    if (ami / "wav.scp").is_file():
        from diar.manifests import read_wav_scp

        out.append(DataSet("ami30", read_wav_scp(ami / "wav.scp"), str(ami / "ref.rttm"), str(ami / "uem")))
    return out


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="diar bench default", description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (num_threads)")
    parser.add_argument("--config", default=None, help="YAML config (default: built-in defaults)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--wav-scp", default=None, help="benchmark this wav.scp instead of the corpus")
    parser.add_argument("--rttm", default=None, help="reference RTTM of --wav-scp")
    parser.add_argument("--uem", default=None, help="UEM of --wav-scp (optional)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per recording; the fastest one counts")
    parser.add_argument(
        "--bound",
        action="store_true",
        help="mode frame: also score the local speakers labelled by the reference (the frame model's bound)",
    )
    return parser.parse_args(argv)


def run_dataset(diarizer, data: DataSet, repeat: int) -> tuple[dict, float]:  # type: ignore[no-untyped-def]
    """Diarize every recording; returns (reco_id -> annotation, audio seconds); fills ``data.times``."""
    from diar.audio import load_audio
    from diar.pipelines import RecordingInput

    hyps = {}
    audio = 0.0
    for reco_id, source in data.sources.items():
        t0 = time.perf_counter()
        waveform = load_audio(source, diarizer.sample_rate, reco_id=reco_id)
        data.times["decode"] += time.perf_counter() - t0
        audio += len(waveform) / diarizer.sample_rate
        best: dict[str, float] | None = None
        for _ in range(max(1, repeat)):
            times: dict[str, float] = defaultdict(float)

            def hook(step: str, seconds: float, times: dict[str, float] = times) -> None:
                times[step] += seconds

            t0 = time.perf_counter()
            hyps[reco_id] = diarizer.apply(RecordingInput(reco_id, waveform), hook)
            times["total"] = time.perf_counter() - t0
            if best is None or times["total"] < best["total"]:
                best = dict(times)
        assert best is not None
        for step, seconds in best.items():
            data.times[step] += seconds
    return hyps, audio


def reference_frames(annotation, num_frames: int, stride: int, offset: int, sample_rate: int):  # type: ignore[no-untyped-def]
    """Shape (num_frames, S) bool: each reference speaker's activity at the frame model's frame
    centres (``offset + stride * t`` samples), speakers in sorted order."""
    import numpy as np

    speakers = sorted(annotation.speakers)
    centres = (offset + stride * np.arange(num_frames)) / sample_rate  # shape: (T,) seconds
    active = np.zeros((num_frames, len(speakers)), dtype=bool)
    for turn in annotation.turns:
        active[(centres >= turn.start) & (centres < turn.end), speakers.index(turn.speaker)] = True
    return active


def bound_dataset(diarizer, data: DataSet, reference: dict) -> dict:  # type: ignore[no-untyped-def]
    """reco_id -> annotation with every local speaker labelled by the reference speaker it
    overlaps most (:func:`~diar.identity.assign.reference_labels`), rendered as the diarizer renders."""
    from diar.audio import load_audio
    from diar.identity.assign import reference_labels, relabel
    from diar.types import Annotation

    hyps = {}
    for reco_id, source in data.sources.items():
        waveform = load_audio(source, diarizer.sample_rate, reco_id=reco_id)
        outputs = diarizer.segment([waveform])[0]
        ref = reference_frames(
            reference.get(reco_id, Annotation(reco_id)),
            outputs.num_frames,
            outputs.frame_stride,
            outputs.frame_center_offset,
            diarizer.sample_rate,
        )
        labels = relabel(reference_labels(outputs, ref))
        hyps[reco_id] = diarizer.render_labels(reco_id, outputs, labels, len(waveform))[0]
    return hyps


def main(argv: list[str] | None = None) -> int:
    args = parse_args(list(sys.argv[1:] if argv is None else argv))
    from diar.config import load_config
    from diar.formats.rttm import read_rttm
    from diar.manifests import read_uem, read_wav_scp
    from diar.pipelines import build_diarizer
    from diar.scoring import score

    config = load_config(args.config, [*args.overrides, f"num_threads={args.threads}"])
    if args.bound and config.mode != "frame":
        sys.stderr.write(f"--bound needs mode frame (local speakers), the config has mode {config.mode}\n")
        return 2
    if args.wav_scp:
        if not args.rttm:
            sys.stderr.write("--wav-scp needs --rttm\n")
            return 2
        datasets = [DataSet(Path(args.wav_scp).parent.name, read_wav_scp(args.wav_scp), args.rttm, args.uem)]
    else:
        datasets = default_datasets()
        if not datasets:
            sys.stderr.write(f"no corpus at {CORPUS}; give --wav-scp and --rttm\n")
            return 2
    t0 = time.perf_counter()
    diarizer = build_diarizer(config)
    loading = time.perf_counter() - t0
    import torch

    say(
        f"models loaded in {loading:.2f} s; mode {config.mode}, "
        f"{'frame model ' + config.frame_model.name + ', ' if config.mode == 'frame' else ''}"
        f"embedder {config.embedding.name}, clustering {config.clustering.method}, "
        f"torch threads {torch.get_num_threads()}"
    )
    for data in datasets:
        reference = read_rttm(data.rttm)
        uem = read_uem(data.uem) if data.uem else None
        hyps, audio = run_dataset(diarizer, data, args.repeat)
        ref = {r: reference[r] for r in hyps if r in reference}
        scores = {c: score(ref, hyps, uem=uem, collar=c) for c in (0.0, 0.25)}
        say(f"\n== {data.name}: {len(hyps)} recordings, {audio:.1f} s of audio")
        say(
            f"{'recording':<14} {'DER c0':>7} {'DER c.25':>8} {'miss':>6} {'FA':>6} {'conf':>6}  spk est/true"
        )
        right = 0
        for reco_id, hyp in hyps.items():
            s0, s25 = scores[0.0].files[reco_id], scores[0.25].files[reco_id]
            true = len(ref[reco_id].speakers) if reco_id in ref else 0
            right += len(hyp.speakers) == true
            say(
                f"{reco_id:<14} {s0.der:7.3f} {s25.der:8.3f} {s25.miss:6.3f} {s25.false_alarm:6.3f} "
                f"{s25.confusion:6.3f}  {len(hyp.speakers)}/{true}"
            )
        c0, c25 = scores[0.0].corpus, scores[0.25].corpus
        say(
            f"{'total':<14} {c0.der:7.3f} {c25.der:8.3f} {c25.miss:6.3f} {c25.false_alarm:6.3f} "
            f"{c25.confusion:6.3f}  {right}/{len(hyps)} counts right"
        )
        if args.bound:
            labelled = bound_dataset(diarizer, data, reference)
            b0, b25 = (score(ref, labelled, uem=uem, collar=c).corpus for c in (0.0, 0.25))
            say(
                f"{'bound':<14} {b0.der:7.3f} {b25.der:8.3f} {b25.miss:6.3f} {b25.false_alarm:6.3f} "
                f"{b25.confusion:6.3f}  (local speakers labelled by the reference)"
            )
        steps = [step for step in data.times if step not in ("total", "decode")]
        split = "  ".join(f"{step} {data.times[step] / audio:.4f}" for step in steps)
        say(f"RTF ({args.threads} thread(s)): diarizing {data.times['total'] / audio:.4f} = {split}")
        whole = loading + data.times["decode"] + data.times["total"]
        say(
            f"RTF of the whole pipeline on {data.name}, models loaded ({loading:.2f} s) and audio "
            f"decoded ({data.times['decode']:.2f} s) included: {whole / audio:.4f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
