"""Benchmark of the Ray job: one actor vs two, and the job's overhead over one plain process.

Each run is a fresh ``python -m jobs.diarize`` subprocess (its own local Ray on
all cores) into a new output folder; its figures come from the ``summary.json``
it writes: wall time of the whole command, work time (actors starting and
processing, after Ray is up), real-time factor (wall / audio), and the summed
per-step times. The baseline runs the same pipeline in one process, recording
after recording, as ``diar diarize`` does (model loaded once;
:mod:`diar.benchmarks.one_process`). The corpus RTTMs of all job runs must be
byte-identical and equal in segments to the baseline.

    diar bench job                      # the bundled sample (diar/data/sample), 1 and 2 actors
    diar bench job --actors 1 2 4 --num-shards 8 --repeat 3 --wav-scp ../shared/corpus/sim/wav.scp

Library code never starts Ray: the job runs in subprocesses.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from diar.benchmarks.default import say
from diar.benchmarks.one_process import run_one_process

#: The corpus diarized by default: the 73 s two-speaker sample shipped with diar.
DEFAULT_SCP = Path(__file__).resolve().parents[1] / "data" / "sample" / "wav.scp"


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("RAY_AUTH_MODE", "disabled")
    env.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    env.setdefault("HF_HUB_OFFLINE", "1")
    return env


def run_job(
    wav_scp: str, out: Path, config: str | None, actors: int, shards: int | None, sets: list[str]
) -> dict:
    """One job subprocess; returns its summary plus the command's own wall time."""
    cmd = [sys.executable, "-m", "jobs.diarize", "--wav-scp", wav_scp, "--out", str(out), "--no-progress"]
    cmd += ["--num-actors", str(actors)]
    if shards is not None:
        cmd += ["--num-shards", str(shards)]
    if config:
        cmd += ["--config", config]
    for item in sets:
        cmd += ["--set", item]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"job failed ({done.returncode}): {done.stderr[-2000:]}")
    summary = json.loads((out / "summary.json").read_text())
    summary["command_seconds"] = wall
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="diar bench job", description=__doc__.split("\n\n")[0])
    parser.add_argument("--wav-scp", default=str(DEFAULT_SCP), help="corpus to diarize")
    parser.add_argument("--config", default=None, help="YAML config (defaults if omitted)")
    parser.add_argument("--actors", type=int, nargs="+", default=[1, 2], help="actor counts to compare")
    parser.add_argument("--num-shards", type=int, default=4, help="shards per run (same for every run)")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--repeat", type=int, default=1, help="runs per actor count; the fastest is shown")
    parser.add_argument("--no-baseline", action="store_true", help="skip the one-process baseline")
    args = parser.parse_args(argv)
    if not Path(args.wav_scp).is_file():
        sys.stderr.write(f"no corpus at {args.wav_scp}; pass --wav-scp\n")
        return 2

    from diar.formats.rttm import read_rttm

    rows = []
    rttms: list[bytes] = []
    with tempfile.TemporaryDirectory() as tmp:
        for actors in args.actors:
            best: dict | None = None
            for attempt in range(args.repeat):
                out = Path(tmp) / f"actors{actors}-{attempt}"
                s = run_job(args.wav_scp, out, args.config, actors, args.num_shards, args.sets)
                rttms.append((out / "corpus.rttm").read_bytes())
                if best is None or s["work_seconds"] < best["work_seconds"]:
                    best = s
            assert best is not None
            rows.append((actors, best))
        job_annotations = read_rttm(Path(tmp) / f"actors{args.actors[0]}-0" / "corpus.rttm")
    audio = rows[0][1]["processed_audio_seconds"]
    say(f"corpus: {args.wav_scp} ({audio:.1f} s of audio, {rows[0][1]['recordings']['total']} recordings)")
    say(
        f"{'actors':>6} {'command s':>10} {'wall s':>8} {'work s':>8} {'RTF':>8} {'compute s':>10}  steps (s)"
    )
    for actors, s in rows:
        steps = ", ".join(f"{k} {v:.1f}" for k, v in s["step_seconds"].items())
        say(
            f"{actors:>6} {s['command_seconds']:>10.1f} {s['wall_seconds']:>8.1f} {s['work_seconds']:>8.1f} "
            f"{s['real_time_factor']:>8.4f} {s['compute_seconds']:>10.1f}  {steps}"
        )
    if len(rows) > 1:
        base = rows[0][1]["work_seconds"]
        for actors, s in rows[1:]:
            say(f"speed-up of {actors} actors over {rows[0][0]} (work time): {base / s['work_seconds']:.2f}x")
    identical = len(set(rttms)) == 1
    say(f"corpus RTTM byte-identical across actor counts and runs: {'yes' if identical else 'NO'}")
    if not args.no_baseline:
        import io

        text, timing, wall = run_one_process(args.wav_scp, args.config, args.sets, _env())
        one = read_rttm(io.StringIO(text))
        same = {k: v.turns for k, v in one.items() if v.turns} == {
            k: v.turns for k, v in job_annotations.items() if v.turns
        }
        say(
            f"one process: command {wall:.1f} s (model load {timing['load_seconds']:.1f} s, "
            f"work {timing['work_seconds']:.1f} s, RTF {wall / timing['audio_seconds']:.4f})"
        )
        s1 = rows[0][1]
        say(
            f"job overhead with {rows[0][0]} actor(s): {s1['command_seconds'] - wall:+.1f} s "
            f"(Ray start, actor start, shard files, reduce)"
        )
        say(f"segments equal to the one-process run: {'yes' if same else 'NO'}")
        identical = identical and same
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
