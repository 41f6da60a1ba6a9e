"""Benchmark of speaker linking (:mod:`diar.linking`) on synthetic speaker traces.

A corpus of N traces is drawn: global speakers whose number of appearances varies widely
(a power law: most people appear in a few recordings, a few in hundreds), recordings of
2-6 distinct speakers, and for each appearance a trace = the speaker's voice plus noise
(unit vectors, ``--dim`` 192 as CAM++). Voices share a common component, so that two
people are about 0.5-0.9 apart in cosine distance, and one person's traces 0.1-0.4 apart
(about what CAM++ gives on LibriSpeech); speech seconds are log-normal, some below
``job.link_min_seconds``, and short traces are noisier.

For each size it prints the wall and CPU time of the linking, the process's peak RSS
before and after it (the difference is what linking added at most), with ``--tracemalloc``
also the peak of every numpy and Python allocation made while linking (a second, slower
run: tracemalloc slows Python's own allocations down), and what was found: global
speakers (and the true number), purity (traces whose global speaker's majority person is
theirs), coverage (traces in their person's largest global speaker), and the cannot-link
violations (must be 0). Each size runs in a fresh process, so that the RSS peaks are its own.

    diar bench link                          # 10 000 and 100 000 traces
    diar bench link --sizes 2000 --json --tracemalloc
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
import tracemalloc
from collections import Counter
from typing import Any

import numpy as np

from diar.benchmarks.default import say
from diar.linking import LinkSettings, Trace, link_traces


def synthetic(num: int, dim: int, seed: int) -> tuple[list[Trace], dict[tuple[str, str], int]]:
    """About ``num`` traces and the person behind each."""
    rng = np.random.default_rng(seed)
    people = max(2, num // 8)
    # appearances per person: a power law (Zipf-like weights)
    weight = 1.0 / np.arange(1, people + 1) ** 0.8
    weight /= weight.sum()
    common = rng.normal(size=dim)
    common /= np.linalg.norm(common)
    voices = rng.normal(size=(people, dim)) / np.sqrt(dim) + 0.55 * common
    voices /= np.linalg.norm(voices, axis=1, keepdims=True)
    traces: list[Trace] = []
    truth: dict[tuple[str, str], int] = {}
    r = 0
    while len(traces) < num:
        k = int(rng.integers(2, 7))
        who = rng.choice(people, size=k, replace=False, p=weight)
        seconds = np.round(np.exp(rng.normal(np.log(40.0), 1.0, size=k)), 2)
        noise = rng.normal(size=(k, dim)) / np.sqrt(dim)
        scale = 0.35 + 1.5 / np.sqrt(np.maximum(seconds, 0.5))  # less speech, more noise
        vecs = voices[who] + noise * scale[:, None]
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        reco = f"rec{r:07d}"
        for j in range(k):
            speaker = f"spk{j + 1}"
            traces.append(Trace(reco, speaker, vecs[j].astype(np.float32), float(seconds[j])))
            truth[(reco, speaker)] = int(who[j])
        r += 1
    return traces, truth


def quality(labels: dict[tuple[str, str], str], truth: dict[tuple[str, str], int]) -> dict[str, Any]:
    """Global speakers found, purity, coverage and cannot-link violations."""
    by_label: dict[str, Counter[int]] = {}
    by_person: dict[int, Counter[str]] = {}
    per_reco: dict[str, list[str]] = {}
    for key, label in labels.items():
        by_label.setdefault(label, Counter())[truth[key]] += 1
        by_person.setdefault(truth[key], Counter())[label] += 1
        per_reco.setdefault(key[0], []).append(label)
    n = len(labels)
    return {
        "global_speakers": len(by_label),
        "true_speakers": len(by_person),
        "purity": round(sum(c.most_common(1)[0][1] for c in by_label.values()) / n, 4),
        "coverage": round(sum(c.most_common(1)[0][1] for c in by_person.values()) / n, 4),
        "cannot_link_violations": sum(len(v) - len(set(v)) for v in per_reco.values()),
    }


def peak_rss_mib() -> float:
    """The process's peak resident memory so far, MiB."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    return round(rss / 2**20, 1)


def run_one(num: int, dim: int, seed: int, settings: LinkSettings, trace_memory: bool) -> dict[str, Any]:
    traces, truth = synthetic(num, dim, seed)
    rss_before = peak_rss_mib()
    t0, c0 = time.perf_counter(), time.process_time()
    labels = link_traces(traces, settings)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    result: dict[str, Any] = {
        "traces": len(traces),
        "recordings": len({t.reco_id for t in traces}),
        "dim": dim,
        "seconds": round(wall, 2),
        "cpu_seconds": round(cpu, 2),
        "peak_rss_before_mib": rss_before,
        "peak_rss_mib": peak_rss_mib(),
        **quality(labels, truth),
    }
    if trace_memory:
        tracemalloc.start()
        again = link_traces(traces, settings)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        if again != labels:
            raise SystemExit("linking the same traces twice gave different results")
        result["peak_linking_mib"] = round(peak / 2**20, 1)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="diar bench link", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000], help="traces per run")
    parser.add_argument("--dim", type=int, default=192, help="embedding dimension")
    parser.add_argument("--seed", type=int, default=0)
    defaults = LinkSettings()
    parser.add_argument("--threshold", type=float, default=defaults.threshold, help="job.link_threshold")
    parser.add_argument(
        "--min-seconds", type=float, default=defaults.min_seconds, help="job.link_min_seconds"
    )
    parser.add_argument("--neighbors", type=int, default=defaults.neighbors, help="job.link_neighbors")
    parser.add_argument("--tracemalloc", action="store_true", help="also measure allocations (a 2nd run)")
    parser.add_argument("--json", action="store_true", help="one JSON object per size")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # in the child process
    args = parser.parse_args(argv)
    settings = LinkSettings(args.threshold, args.min_seconds, args.neighbors)
    if args.one:
        say(json.dumps(run_one(args.sizes[0], args.dim, args.seed, settings, args.tracemalloc)))
        return 0
    for num in args.sizes:
        cmd = [
            sys.executable,
            "-m",
            "diar.benchmarks.link",
            "--one",
            "--sizes",
            str(num),
            "--dim",
            str(args.dim),
        ]
        cmd += ["--seed", str(args.seed), "--threshold", str(args.threshold)]
        cmd += ["--min-seconds", str(args.min_seconds), "--neighbors", str(args.neighbors)]
        if args.tracemalloc:
            cmd.append("--tracemalloc")
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"benchmark at {num} traces failed: {done.stderr[-2000:]}")
        result = json.loads(done.stdout.strip().splitlines()[-1])
        if args.json:
            say(json.dumps(result))
            continue
        memory = (
            f", {result['peak_linking_mib']:.0f} MiB allocated at peak"
            if "peak_linking_mib" in result
            else ""
        )
        say(
            f"{result['traces']} traces ({result['recordings']} recordings, dim {result['dim']}): "
            f"{result['seconds']:.1f} s ({result['cpu_seconds']:.1f} s CPU); peak RSS "
            f"{result['peak_rss_before_mib']:.0f} -> {result['peak_rss_mib']:.0f} MiB{memory}; "
            f"{result['global_speakers']} global speakers for {result['true_speakers']} people, purity "
            f"{result['purity']:.4f}, coverage {result['coverage']:.4f}, "
            f"{result['cannot_link_violations']} cannot-link violations"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
