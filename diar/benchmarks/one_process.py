"""The pipeline in one process, as ``diar diarize`` runs it: the baseline the job benchmarks
(``diar bench job``, ``diar bench scale``) compare the Ray job with.

Run in a fresh process, so that start-up (imports, model) and work (decoding and diarizing
every recording, in recording-id order) are timed apart:

    python -m diar.benchmarks.one_process [--threads N] [--config FILE] WAV_SCP [KEY=VALUE ...]

It writes the RTTM to stdout and one JSON line of timings (``load_seconds``,
``work_seconds``, ``audio_seconds``) to stderr. With ``--threads``, torch gets its threads
before the model is built, as in an actor (``jobs.actors.ShardActor``): set later, the same
work was 10-20 % slower on the development machine, a difference that is not Ray's.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Mapping


def main(argv: list[str] | None = None) -> int:
    t0 = time.perf_counter()
    parser = argparse.ArgumentParser(prog="python -m diar.benchmarks.one_process")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (config: num_threads)")
    parser.add_argument("--config", default=None, help="YAML config (defaults if omitted)")
    parser.add_argument("wav_scp")
    parser.add_argument("sets", nargs="*", metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    overrides = list(args.sets)
    if args.threads is not None:
        from diar.models.build import set_torch_threads

        set_torch_threads(args.threads)
        overrides.append(f"num_threads={args.threads}")
    from diar.config import load_config
    from diar.formats.rttm import write_rttm
    from diar.manifests import read_wav_scp
    from diar.pipelines import RecordingInput, build_diarizer

    diarizer = build_diarizer(load_config(args.config, overrides))
    t1 = time.perf_counter()
    annotations = []
    audio = 0.0
    for reco_id, source in sorted(read_wav_scp(args.wav_scp).items()):
        waveform = diarizer.load(source, reco_id)
        audio += len(waveform) / diarizer.sample_rate
        annotations.append(diarizer.apply(RecordingInput(reco_id, waveform)))
    t2 = time.perf_counter()
    write_rttm(annotations, sys.stdout)
    timing = {"load_seconds": t1 - t0, "work_seconds": t2 - t1, "audio_seconds": audio}
    sys.stderr.write(json.dumps(timing) + "\n")
    return 0


def run_one_process(
    wav_scp: str,
    config: str | None,
    sets: list[str],
    env: Mapping[str, str],
    threads: int | None = None,
) -> tuple[str, dict[str, float], float]:
    """:func:`main` in a fresh process: its RTTM text, its timings, and the command's wall time."""
    cmd = [sys.executable, "-m", "diar.benchmarks.one_process"]
    if threads is not None:
        cmd += ["--threads", str(threads)]
    if config:
        cmd += ["--config", config]
    cmd += [wav_scp, *sets]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=dict(env), capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"one-process run failed: {done.stderr[-2000:]}")
    return done.stdout, json.loads(done.stderr.strip().splitlines()[-1]), wall


if __name__ == "__main__":
    sys.exit(main())
