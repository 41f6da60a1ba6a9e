"""Benchmark of the report page (``diar report``) on a synthetic job of many recordings.

It writes the output folder of a job that never ran, the way the job writes it (the
library's writers: ``corpus.rttm``, ``failures.tsv``, ``summary.json``, ``job.json``), with a
reference RTTM and a UEM beside it: ``--recordings`` recordings (10 000 by default) whose
lengths are log-uniform between ``--minutes`` MIN and MAX (2 to 40 min: about 2 100 hours for
10 000), 2-6 speakers each taking turns at ``--turns-per-minute`` with some overlap, and a
hypothesis made from the reference by the errors a system makes (boundaries moved, turns
missed, turns given to the wrong speaker, false alarms, and in one recording in ten two
speakers merged), ``--failures`` of the recordings failed.

Then it times ``diar report OUT`` (the page the job writes with ``job.report``) and ``diar
report OUT --ref ref.rttm --uem uem --collar 0.25`` (with DER / JER and the errors on every
timeline), each read + scored + rendered + written in a fresh process, and prints the wall
and CPU seconds of each, the page's size and the process's peak RSS. With ``--browser`` it
also opens the scored page in headless Chromium: the time to a screenshot of it and of the
last page of its table (whose timelines the script builds on demand), and the rows, figures
and built timelines its DOM holds (``--dump-dom``).

    diar bench report                              # 10 000 recordings, 2-40 min
    diar bench report --recordings 1000 --browser --keep /tmp/report-bench
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from diar.benchmarks.default import say
from diar.failures import Failure
from diar.formats import atomic_open
from diar.formats.failures import failures_tsv
from diar.formats.rttm import write_rttm
from diar.types import Annotation, Turn


def synthetic_job(
    folder: str | os.PathLike[str],
    recordings: int = 10_000,
    minutes: tuple[float, float] = (2.0, 40.0),
    turns_per_minute: float = 15.0,
    failures: float = 0.005,
    seed: int = 0,
) -> dict[str, Any]:
    """Write ``folder/out`` (a job's output folder), ``folder/ref.rttm`` and ``folder/uem``.

    Returns:
        ``{"out", "ref", "uem"}`` paths and the corpus's ``recordings``, ``failed``,
        ``hours`` and ``turns`` (reference turns).
    """
    rng = np.random.default_rng(seed)
    root = Path(folder)
    out = root / "out"
    out.mkdir(parents=True, exist_ok=True)
    width = len(str(recordings - 1))
    references: list[Annotation] = []
    hypotheses: list[Annotation] = []
    failed: list[Failure] = []
    durations: dict[str, float] = {}
    lo, hi = (math.log(m * 60.0) for m in minutes)
    for i in range(recordings):
        reco = f"rec{i:0{width}d}"
        seconds = round(float(np.exp(rng.uniform(lo, hi))), 2)
        durations[reco] = seconds
        ref = _conversation(
            reco,
            seconds,
            int(rng.choice([2, 3, 4, 5, 6], p=[0.3, 0.3, 0.2, 0.1, 0.1])),
            turns_per_minute,
            rng,
        )
        references.append(ref)
        if rng.random() < failures:
            stage = str(rng.choice(["read", "diarize"]))
            message = (
                f"recording {reco!r} (/data/{reco}.wav): truncated WAV file"
                if stage == "read"
                else "CUDA out of memory. Tried to allocate 2.00 GiB"
            )
            failed.append(
                Failure(reco, stage, "AudioDecodeError" if stage == "read" else "RuntimeError", message)
            )
            continue
        hypotheses.append(_system(ref, seconds, rng))
    with atomic_open(root / "ref.rttm") as f:
        write_rttm(references, f)
    with atomic_open(root / "uem") as f:
        f.writelines(f"{reco} 1 0.000 {seconds:.3f}\n" for reco, seconds in durations.items())
    with atomic_open(out / "corpus.rttm") as f:
        write_rttm(hypotheses, f)
    with atomic_open(out / "failures.tsv") as f:
        f.write(failures_tsv(failed))
    audio = sum(durations.values())
    done_audio = audio - sum(durations[f.reco_id] for f in failed)
    wall = 0.02 * done_audio / 8 + 40.0  # as if 8 actors ran at a real-time factor of 0.02
    shard_ids = [f"shard-{k:05d}" for k in range(max(1, recordings // 50))]
    shards: dict[str, list[list[Any]]] = {s: [] for s in shard_ids}
    for k, (reco, seconds) in enumerate(durations.items()):
        shards[shard_ids[k % len(shard_ids)]].append([reco, seconds])
    plan = {
        "layout": 1,
        "shards": [
            {"shard_id": s, "seconds": sum(x[1] for x in items), "items": items}
            for s, items in shards.items()
        ],
    }
    summary = {
        "status": "ok",
        "recordings": {"total": recordings, "done": recordings - len(failed), "failed": len(failed)},
        "audio_hours": round(done_audio / 3600.0, 6),
        "wall_seconds": round(wall, 3),
        "work_seconds": round(wall - 5.0, 3),
        "startup_seconds": {"ray": 4.5, "first_actor": 3.2, "last_actor": 9.8},
        "process_seconds": round(wall - 15.0, 3),
        "processed_audio_seconds": round(done_audio, 3),
        "real_time_factor": round(wall / done_audio, 6),
        "compute_seconds": round(0.02 * done_audio, 3),
        "step_seconds": {
            "segmentation": round(0.005 * done_audio, 3),
            "embeddings": round(0.013 * done_audio, 3),
        },
        "num_actors": 8,
        "actors_ready": 8,
        "nodes": 2,
        "shards": {"total": len(shard_ids), "run": len(shard_ids), "reused": 0, "lost": 0},
        "failure_budget": {"max_failures": 0.01, "allowed": recordings // 100},
        "outputs": ["corpus.rttm", "failures.tsv", "report.html", "summary.json"],
        "config": {
            "mode": "frame",
            "frame_model": {"name": "segmentation-3.0"},
            "embedding": {"name": "campplus"},
        },
    }
    with atomic_open(out / "summary.json") as f:
        f.write(json.dumps(summary, indent=2) + "\n")
    with atomic_open(out / "job.json") as f:
        f.write(json.dumps(plan, indent=1) + "\n")
    return {
        "out": str(out),
        "ref": str(root / "ref.rttm"),
        "uem": str(root / "uem"),
        "recordings": recordings,
        "failed": len(failed),
        "hours": audio / 3600.0,
        "turns": sum(len(a.turns) for a in references),
    }


def _conversation(reco: str, seconds: float, speakers: int, turns_per_minute: float, rng: Any) -> Annotation:
    """Speakers taking turns (log-normal lengths, a pause or some overlap between turns)."""
    cycle = 60.0 / turns_per_minute
    turns: list[Turn] = []
    t = float(rng.uniform(0.0, 2.0))
    speaker = int(rng.integers(speakers))
    while t < seconds - 0.5:
        length = float(min(rng.lognormal(math.log(0.75 * cycle), 0.7), seconds - t))
        turns.append(Turn(reco, round(t, 3), round(t + length, 3), f"S{speaker}"))
        if rng.random() < 0.85:
            speaker = (speaker + int(rng.integers(1, speakers))) % speakers
        t += length + float(rng.uniform(-0.6, 0.3 * cycle))
        t = max(t, turns[-1].start + 0.05)
    return Annotation(reco, tuple(t for t in turns if t.end - t.start >= 0.01))


def _system(ref: Annotation, seconds: float, rng: Any) -> Annotation:
    """A hypothesis made from ``ref`` by a system's kinds of error, speakers relabelled."""
    speakers = ref.speakers
    merged = {speakers[-1]: speakers[0]} if len(speakers) > 2 and rng.random() < 0.1 else {}
    turns: list[Turn] = []
    for t in ref.turns:
        if rng.random() < 0.05:  # missed
            continue
        speaker = merged.get(t.speaker, t.speaker)
        if rng.random() < 0.04:  # confused
            speaker = str(rng.choice(speakers))
        start = max(0.0, t.start + float(rng.normal(0.0, 0.15)))
        end = min(seconds, t.end + float(rng.normal(0.0, 0.15)))
        if end - start > 0.05:
            turns.append(Turn(ref.reco_id, round(start, 3), round(end, 3), speaker))
    for _ in range(int(rng.poisson(seconds / 120.0))):  # false alarms
        start = float(rng.uniform(0.0, max(seconds - 1.0, 0.1)))
        turns.append(
            Turn(ref.reco_id, round(start, 3), round(start + float(rng.uniform(0.3, 1.5)), 3), speakers[0])
        )
    names = {s: f"spk{k + 1}" for k, s in enumerate(speakers)}
    return Annotation.from_turns(
        ref.reco_id, (Turn(t.reco_id, t.start, t.end, names[t.speaker]) for t in turns)
    )


def time_report(job: dict[str, Any], scored: bool, page: str) -> dict[str, Any]:
    """Read, (score,) render and write one page in this process: the wall seconds of each step,
    the CPU seconds and peak RSS of the process, and the page's size."""
    from diar.formats.rttm import read_rttm
    from diar.manifests import read_uem
    from diar.report.inputs import read_job_outputs
    from diar.report.page import Reference, render_report

    t0 = time.perf_counter()
    outputs = read_job_outputs(job["out"])
    reference = None
    if scored:
        reference = Reference(
            read_rttm(job["ref"]), job["ref"], read_uem(job["uem"]), job["uem"], collar=0.25
        )
    t1 = time.perf_counter()
    html = render_report(outputs, reference)
    t2 = time.perf_counter()
    with atomic_open(page) as f:
        f.write(html)
    t3 = time.perf_counter()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "scored": scored,
        "read_seconds": round(t1 - t0, 2),
        "render_seconds": round(t2 - t1, 2),
        "write_seconds": round(t3 - t2, 2),
        "total_seconds": round(t3 - t0, 2),
        "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 2),
        "max_rss_mib": round(usage.ru_maxrss / 1024.0, 1),
        "bytes": os.path.getsize(page),
    }


def time_report_alone(job: dict[str, Any], scored: bool, page: str) -> dict[str, Any]:
    """:func:`time_report` in a fresh process, so that its CPU time and memory are its own."""
    spec = os.path.join(os.path.dirname(page), "bench-job.json")
    with atomic_open(spec) as f:
        f.write(json.dumps(job))
    cmd = [sys.executable, "-m", "diar.benchmarks.report", "--one", spec, page]
    if scored:
        cmd.append("--scored")
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"diar bench report: the report run failed: {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def time_browser(page: str, recordings: int) -> dict[str, Any]:
    """Open ``page`` in headless Chromium: seconds to a screenshot of it and of its last table
    page (the time to open it and draw what is shown, Chromium's start included), and what the
    DOM holds once loaded (``--dump-dom``, whose time is mostly serialising the whole page)."""
    from diar.report.browser import dump_dom, screenshot

    t0 = time.perf_counter()
    screenshot(page, page + ".png", timeout=600)
    t1 = time.perf_counter()
    dom = dump_dom(page, timeout=600)
    t2 = time.perf_counter()
    last = dom.count('class="page"')
    screenshot(page, page + ".last.png", timeout=600, fragment=f"page-{last}")
    t3 = time.perf_counter()
    dom_last = dump_dom(page, timeout=600, fragment=f"page-{last}")
    return {
        "screenshot_seconds": round(t1 - t0, 2),
        "dump_dom_seconds": round(t2 - t1, 2),
        "rows": dom.count('<tr id="t'),
        "figures": dom.count("<figure "),
        "timelines_built": _built(dom),
        "last_page_screenshot_seconds": round(t3 - t2, 2),
        "timelines_built_last_page": _built(dom_last),
        "expected_rows": recordings,
    }


def _built(dom: str) -> int:
    """Timelines that are SVG elements in a dumped DOM (not yet the text of a lazy page)."""
    return dom.count('<svg class="tl"') - dom.count('<script type="text/html" class="tl">')


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="diar bench report", description=__doc__.split("\n\n")[0])
    parser.add_argument("--recordings", type=int, default=10_000, help="recordings in the synthetic job")
    parser.add_argument(
        "--minutes",
        type=float,
        nargs=2,
        default=[2.0, 40.0],
        metavar=("MIN", "MAX"),
        help="recording lengths",
    )
    parser.add_argument("--turns-per-minute", type=float, default=15.0, help="reference turns per minute")
    parser.add_argument("--failures", type=float, default=0.005, help="fraction of recordings failed")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--browser", action="store_true", help="also open the scored page in headless Chromium"
    )
    parser.add_argument(
        "--keep", default=None, metavar="DIR", help="write the job and pages here and keep them"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--one", nargs=2, default=None, help=argparse.SUPPRESS)  # in the child process
    parser.add_argument("--scored", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one is not None:
        with open(args.one[0], encoding="utf-8") as f:
            say(json.dumps(time_report(json.load(f), args.scored, args.one[1])))
        return 0
    with tempfile.TemporaryDirectory(prefix="diar-bench-report-") as tmp:
        folder = args.keep or tmp
        t0 = time.perf_counter()
        job = synthetic_job(
            folder, args.recordings, tuple(args.minutes), args.turns_per_minute, args.failures, args.seed
        )
        job["generate_seconds"] = round(time.perf_counter() - t0, 2)
        runs = [time_report_alone(job, False, os.path.join(folder, "report.html"))]
        runs.append(time_report_alone(job, True, os.path.join(folder, "report-scored.html")))
        result: dict[str, Any] = {"job": job, "runs": runs}
        if args.browser:
            result["browser"] = time_browser(os.path.join(folder, "report-scored.html"), args.recordings)
    if args.json:
        say(json.dumps(result))
        return 0
    say(
        f"synthetic job: {job['recordings']:,} recordings ({job['failed']} failed), {job['hours']:,.0f} h, "
        f"{job['turns']:,} reference turns; made in {job['generate_seconds']:.1f} s"
    )
    for run in runs:
        what = "diar report OUT --ref --uem --collar 0.25" if run["scored"] else "diar report OUT"
        steps = f"read {run['read_seconds']:.1f}, {'score + ' if run['scored'] else ''}render "
        steps += f"{run['render_seconds']:.1f}, write {run['write_seconds']:.1f}; "
        steps += f"{run['cpu_seconds']:.1f} s of CPU with the imports"
        say(
            f"{what}: {run['total_seconds']:.1f} s ({steps}); "
            f"page {run['bytes'] / 2**20:.1f} MiB; peak RSS {run['max_rss_mib']:,.0f} MiB"
        )
    if "browser" in result:
        b = result["browser"]
        say(
            f"headless Chromium, scored page: a screenshot in {b['screenshot_seconds']:.1f} s, of its last "
            f"table page in {b['last_page_screenshot_seconds']:.1f} s (Chromium's start included); DOM: "
            f"{b['rows']:,} rows (expected {b['expected_rows']:,}), {b['figures']:,} timelines, "
            f"{b['timelines_built']} of them built (the first page's), {b['timelines_built_last_page']} with "
            f"the last page shown; --dump-dom {b['dump_dom_seconds']:.1f} s (serialising the whole page)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
