"""Benchmark of the Ray job's scaling: throughput with 1 and N actors, overhead, actor memory.

Three measurements, all on audio made from the bundled sample (or ``--wav-scp``):

* **Throughput and scaling.** The same corpus (``--minutes`` of audio in ``--recordings``
  recordings, ``--num-shards`` shards) through ``python -m jobs.diarize`` with each count of
  ``--actors``, each run a fresh subprocess with its own local Ray. Throughput is audio
  seconds per second of processing, from the first actor ready to the last shard
  (``summary.json``: ``process_seconds``; the other actors' start-up overlaps it); the
  scaling efficiency of N actors is their throughput over N times that of one actor
  (ideal: 1.00). On a machine with fewer free cores than actors the ideal cannot be reached.
* **Ray overhead.** The same corpus in one plain process, recording after recording, as
  ``diar diarize`` runs it (model loaded once), on one thread as an actor of
  ``job.num_cpus=1`` runs (torch's threads set before the model is built, and
  ``OMP_NUM_THREADS``). The one-time start-up is reported apart:
  starting Ray and the first actor (process, imports, model) against the plain process's
  imports and model; the overhead after start-up compares the job's processing time with
  one actor against the plain process's work on the same audio.
* **Stage split** (``--stages``). The same corpus through the job with one actor doing
  everything (``job.stages=single``) and through the stage split (``job.stages=split``, one
  actor per stage; on a machine without GPUs its model stages run on CPU actors): from Ray
  up to the last shard, actor start-up included (the split's actors start while the
  first recordings are read), and whether the corpus RTTMs are byte-identical.
* **Memory.** One actor, one recording of each ``--memory-minutes`` length: its peak
  resident memory (the done record's ``max_rss_mib``, ``ru_maxrss`` of the actor process).

    diar bench scale                                  # 16 min in 8 recordings, actors 1 and 2, 10 / 60 min
    diar bench scale --actors 1 2 4 --minutes 30 --repeat 3 --memory-minutes 10 60 120
    diar bench scale --wav-scp my/wav.scp --no-memory --json

Each measurement runs ``--repeat`` times, the runs interleaved, and the fastest is shown.
Library code never starts Ray: the job runs in subprocesses. Timings are noisy on a
shared machine; nothing here is asserted by the tests.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from diar.benchmarks.default import say
from diar.benchmarks.job import run_job as run_job_subprocess
from diar.benchmarks.one_process import run_one_process

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample" / "sim01_2spk.flac"


def make_recording(path: Path, seconds: float, seed: int) -> None:
    """A recording of ``seconds`` made of the bundled sample, each copy started at another point."""
    import soundfile as sf

    audio, rate = sf.read(SAMPLE, dtype="float32")
    rng = np.random.default_rng(seed)
    need = round(seconds * rate)
    parts: list[np.ndarray] = []
    while sum(len(p) for p in parts) < need:
        parts.append(np.roll(audio, -int(rng.integers(len(audio)))))
    # shape: (need,)
    sf.write(path, np.concatenate(parts)[:need], rate, subtype="PCM_16")


def make_corpus(folder: Path, minutes: float, recordings: int) -> Path:
    """``recordings`` recordings of ``minutes / recordings`` each; returns their wav.scp."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(recordings):
        path = folder / f"rec{i:02d}.wav"
        make_recording(path, minutes * 60.0 / recordings, seed=i)
        lines.append(f"rec{i:02d} {path}")
    scp = folder / "wav.scp"
    scp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return scp


def machine() -> str:
    """What the figures were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    load = ""
    if hasattr(os, "getloadavg"):
        load = f", load average {os.getloadavg()[0]:.1f} at the start"
    return f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}{load}"


def one_process(scp: Path, config: str | None, sets: list[str]) -> tuple[str, dict[str, float]]:
    """The pipeline in one process on one thread, with ``OMP_NUM_THREADS=1`` (what Ray gives an
    actor of one CPU): its RTTM text and its timings (:mod:`diar.benchmarks.one_process`)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1")}
    text, timing, _ = run_one_process(str(scp), config, sets, env, threads=1)
    return text, timing


def scaling(
    scp: Path,
    tmp: Path,
    actors: list[int],
    shards: int,
    repeat: int,
    baseline: bool,
    config: str | None,
    sets: list[str],
) -> tuple[dict[int, dict[str, Any]], tuple[str, dict[str, float]] | None, bool]:
    """``repeat`` rounds of: the one-process run (``baseline``), then one job run per actor count.

    Rounds alternate the runs so that a change of the machine's load hits them alike; the
    fastest of each is kept. Returns the job summaries by actor count, the one-process run
    (RTTM text, timings), and whether every job's corpus RTTM was the same.
    """
    best: dict[int, dict[str, Any]] = {}
    one: tuple[str, dict[str, float]] | None = None
    rttms = set()
    for attempt in range(repeat):
        if baseline:
            run = one_process(scp, config, sets)
            if one is None or run[1]["work_seconds"] < one[1]["work_seconds"]:
                one = run
        for count in actors:
            out = tmp / f"actors{count}-{attempt}"
            summary = run_job_subprocess(str(scp), out, config, count, shards, sets)
            summary["out"] = str(out)
            rttms.add((out / "corpus.rttm").read_bytes())
            if count not in best or summary["process_seconds"] < best[count]["process_seconds"]:
                best[count] = summary
    return best, one, len(rttms) == 1


def stage_split(
    scp: Path, tmp: Path, shards: int, repeat: int, config: str | None, sets: list[str]
) -> tuple[dict[str, dict[str, Any]], bool]:
    """``repeat`` rounds of the single-actor path and the stage split; the fastest of each
    (summaries by ``job.stages``) and whether their corpus RTTMs are byte-identical."""
    best: dict[str, dict[str, Any]] = {}
    rttms = set()
    for attempt in range(repeat):
        for stages in ("single", "split"):
            out = tmp / f"stages-{stages}-{attempt}"
            summary = run_job_subprocess(str(scp), out, config, 1, shards, [*sets, f"job.stages={stages}"])
            rttms.add((out / "corpus.rttm").read_bytes())
            work = summary["process_seconds"] + summary["startup_seconds"]["first_actor"]
            summary["work_seconds"] = work
            if stages not in best or work < best[stages]["work_seconds"]:
                best[stages] = summary
    return best, len(rttms) == 1


def memory(
    tmp: Path, minutes: list[float], config: str | None, sets: list[str]
) -> list[tuple[float, dict[str, Any]]]:
    """One actor on one recording of each length: the done record of its shard."""
    rows = []
    for length in minutes:
        folder = tmp / f"memory{length:g}"
        folder.mkdir()
        make_recording(folder / "long.wav", length * 60.0, seed=100)
        scp = folder / "wav.scp"
        scp.write_text(f"long {folder / 'long.wav'}\n", encoding="utf-8")
        out = folder / "out"
        summary = run_job_subprocess(str(scp), out, config, 1, 1, sets)
        (done,) = [json.loads(p.read_text()) for p in (out / "shards").glob("*.done.json")]
        done["summary"] = summary
        rows.append((length, done))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="diar bench scale", description=__doc__.split("\n\n")[0])
    parser.add_argument("--wav-scp", default=None, help="corpus (default: made from the bundled sample)")
    parser.add_argument("--minutes", type=float, default=16.0, help="audio of the made corpus")
    parser.add_argument("--recordings", type=int, default=8, help="recordings of the made corpus")
    parser.add_argument("--num-shards", type=int, default=8, help="shards per run (same for every run)")
    parser.add_argument("--actors", type=int, nargs="+", default=[1, 2], help="actor counts to compare")
    parser.add_argument("--memory-minutes", type=float, nargs="+", default=[10.0, 60.0])
    parser.add_argument("--no-memory", action="store_true", help="skip the memory runs")
    parser.add_argument("--no-baseline", action="store_true", help="skip the one-process baseline")
    parser.add_argument(
        "--stages", action="store_true", help="also the stage split (job.stages=split) against one actor"
    )
    parser.add_argument("--repeat", type=int, default=2, help="rounds of runs; the fastest of each is shown")
    parser.add_argument("--config", default=None, help="YAML config (defaults if omitted)")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--json", action="store_true", help="also print the figures as one JSON object")
    args = parser.parse_args(argv)
    if 1 not in args.actors:
        parser.error("--actors must include 1 (the reference of the scaling efficiency)")

    from diar.formats.rttm import read_rttm

    figures: dict[str, Any] = {"machine": machine()}
    say(f"machine: {figures['machine']}")
    with tempfile.TemporaryDirectory(prefix="diar-bench-scale-") as name:
        tmp = Path(name)
        scp = (
            Path(args.wav_scp) if args.wav_scp else make_corpus(tmp / "corpus", args.minutes, args.recordings)
        )
        best, baseline, identical = scaling(
            scp,
            tmp,
            sorted(set(args.actors)),
            args.num_shards,
            args.repeat,
            not args.no_baseline,
            args.config,
            args.sets,
        )
        rows = sorted(best.items())
        one = best[1]
        audio = one["processed_audio_seconds"]
        say(
            f"corpus: {audio / 60:.1f} min of audio, {one['recordings']['total']} recordings, "
            f"{args.num_shards} shards; the fastest of {args.repeat} runs each"
        )
        say(
            f"{'actors':>6} {'ready':>5} {'Ray s':>6} {'1st actor s':>11} {'all ready s':>11} "
            f"{'process s':>9} {'audio s/s':>9} {'speed-up':>8} {'ideal':>5} {'efficiency':>10}"
        )
        base = audio / one["process_seconds"]
        figures["scaling"] = []
        for count, s in rows:
            throughput = s["processed_audio_seconds"] / s["process_seconds"]
            speedup = throughput / base
            say(
                f"{count:>6} {s['actors_ready']:>5} {s['startup_seconds']['ray']:>6.1f} "
                f"{s['startup_seconds']['first_actor']:>11.1f} {s['startup_seconds']['last_actor']:>11.1f} "
                f"{s['process_seconds']:>9.1f} "
                f"{throughput:>9.1f} {speedup:>7.2f}x {count:>4}x {speedup / count:>10.2f}"
            )
            figures["scaling"].append(
                {
                    "actors": count,
                    "actors_ready": s["actors_ready"],
                    "startup_seconds": s["startup_seconds"],
                    "process_seconds": s["process_seconds"],
                    "wall_seconds": s["wall_seconds"],
                    "audio_seconds_per_second": round(throughput, 3),
                    "speedup": round(speedup, 3),
                    "efficiency": round(speedup / count, 3),
                }
            )
        say(f"corpus RTTM byte-identical across actor counts and runs: {'yes' if identical else 'NO'}")
        figures["identical"] = identical

        if baseline is not None:
            text, timing = baseline
            job_rttm = Path(one["out"]) / "corpus.rttm"
            job_turns = {k: v.turns for k, v in read_rttm(job_rttm).items() if v.turns}
            same = {k: v.turns for k, v in read_rttm(io.StringIO(text)).items() if v.turns} == job_turns
            after = (
                one["wall_seconds"] - one["startup_seconds"]["ray"] - one["startup_seconds"]["first_actor"]
            )
            overhead = one["process_seconds"] / timing["work_seconds"] - 1.0
            say(
                f"one process (as diar diarize): start-up {timing['load_seconds']:.1f} s (imports, model), "
                f"work {timing['work_seconds']:.1f} s"
            )
            say(
                f"job with 1 actor: start-up {one['startup_seconds']['ray']:.1f} s Ray + "
                f"{one['startup_seconds']['first_actor']:.1f} s first actor (process, imports, model); "
                f"processing {one['process_seconds']:.1f} s; after start-up, the whole job "
                f"(plan, shards, reduce) {after:.1f} s"
            )
            say(f"Ray overhead after start-up: {overhead:+.1%} of the one-process work time")
            say(f"turns equal to the one-process run: {'yes' if same else 'NO'}")
            figures["baseline"] = {
                "load_seconds": round(timing["load_seconds"], 3),
                "work_seconds": round(timing["work_seconds"], 3),
                "job_after_startup_seconds": round(after, 3),
                "overhead_after_startup": round(overhead, 4),
                "same_turns": same,
            }
            identical = identical and same

        if args.stages:
            split, same_split = stage_split(scp, tmp, args.num_shards, args.repeat, args.config, args.sets)
            figures["stages"] = {}
            say(f"{'job.stages':>10} {'work s':>7} {'audio s/s':>9} (Ray up to the last shard)")
            for stages, s in split.items():
                throughput = s["processed_audio_seconds"] / s["work_seconds"]
                say(f"{stages:>10} {s['work_seconds']:>7.1f} {throughput:>9.1f}")
                figures["stages"][stages] = {
                    "work_seconds": round(s["work_seconds"], 3),
                    "audio_seconds_per_second": round(throughput, 3),
                }
            say(f"stage split's corpus RTTM byte-identical to one actor's: {'yes' if same_split else 'NO'}")
            figures["stages"]["identical"] = same_split
            identical = identical and same_split

        if not args.no_memory:
            figures["memory"] = []
            say(f"{'minutes':>7} {'actor peak RSS MiB':>18} {'compute s':>9} {'RTF':>6}")
            for length, done in memory(tmp, args.memory_minutes, args.config, args.sets):
                rtf = done["compute_seconds"] / (length * 60.0)
                say(f"{length:>7g} {done['max_rss_mib']:>18.0f} {done['compute_seconds']:>9.1f} {rtf:>6.3f}")
                figures["memory"].append(
                    {
                        "minutes": length,
                        "max_rss_mib": done["max_rss_mib"],
                        "compute_seconds": done["compute_seconds"],
                    }
                )
    if args.json:
        say(json.dumps(figures))
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
