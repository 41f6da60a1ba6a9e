"""Benchmark of diarization with enrolled speakers: DER with every speaker enrolled, with the
speaker who talks most in each recording left out of the enrollment, and without enrollment
(clustering), in the same run.

For each recording the frame model and the embeddings run once; the identity step then runs
three times: without profiles, with the full enrollment, with one speaker left out. The
profiles are made as ``diar profiles`` makes them with the same config (mode frame: the
speech the frame model hears in each enrollment file, no VAD). It prints per recording and in
total the DER at collar 0.25 and 0 (overlap scored) of the three, the speaker counts, and,
for the left-out runs, the label the left-out speaker gets (DER's speaker mapping): it must be
none of the enrolled names (the left-out speaker is an unknown speaker).

    diar bench profile                          # ../shared/corpus/sim with its enroll.scp
    diar bench profile --wav-scp W --rttm R --uem U --enroll E
"""

from __future__ import annotations

import argparse
import sys
import time

from diar.benchmarks.default import CORPUS, say


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="diar bench profile", description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (num_threads)")
    parser.add_argument("--config", default=None, help="YAML config (default: built-in defaults, mode frame)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--wav-scp", default=None, help="recordings (default: ../shared/corpus/sim)")
    parser.add_argument("--rttm", default=None, help="reference RTTM of --wav-scp")
    parser.add_argument("--uem", default=None, help="UEM of --wav-scp (optional)")
    parser.add_argument("--enroll", default=None, help="enrollment list '<reco-id> <speaker> <path>'")
    return parser.parse_args(argv)


def most_talkative(annotation) -> str:  # type: ignore[no-untyped-def]
    """The reference speaker with the most speech."""
    seconds: dict[str, float] = {}
    for turn in annotation:
        seconds[turn.speaker] = seconds.get(turn.speaker, 0.0) + turn.end - turn.start
    return max(sorted(seconds), key=lambda s: seconds[s])


def mapped_speaker(reference, hypothesis, speaker: str) -> str | None:  # type: ignore[no-untyped-def]
    """The hypothesis label DER's speaker mapping gives reference ``speaker``, or None."""
    from diar.scoring import error_regions

    mapping = error_regions(reference.turns, hypothesis.turns).mapping  # hypothesis -> reference
    return next((hyp for hyp, ref in sorted(mapping.items()) if ref == speaker), None)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(list(sys.argv[1:] if argv is None else argv))
    from diar.config import load_config
    from diar.formats.rttm import read_rttm
    from diar.manifests import read_enrollment, read_uem, read_wav_scp
    from diar.pipelines import RecordingInput
    from diar.pipelines.frame import FrameDiarizer
    from diar.scoring import score

    if args.wav_scp:
        if not (args.rttm and args.enroll):
            sys.stderr.write("--wav-scp needs --rttm and --enroll\n")
            return 2
        wav_scp, rttm, uem_path, enroll = args.wav_scp, args.rttm, args.uem, args.enroll
    else:
        sim = CORPUS / "sim"
        if not (sim / "wav.scp").is_file():
            sys.stderr.write(f"no corpus at {sim}; give --wav-scp, --rttm and --enroll\n")
            return 2
        wav_scp, rttm, uem_path, enroll = (str(sim / n) for n in ("wav.scp", "ref.rttm", "uem", "enroll.scp"))
    config = load_config(args.config, [*args.overrides, f"num_threads={args.threads}"])
    if config.mode != "frame":
        sys.stderr.write(
            f"diar bench profile measures mode frame's identity step, the config has {config.mode}\n"
        )
        return 2
    sources = read_wav_scp(wav_scp)
    reference = read_rttm(rttm)
    uem = read_uem(uem_path) if uem_path else None
    enrollment = read_enrollment(enroll)
    diarizer = FrameDiarizer(config)
    runs: dict[str, dict] = {"clustering": {}, "enrolled": {}, "one left out": {}}
    left_out: dict[str, str] = {}
    labels: dict[str, str | None] = {}
    enroll_seconds = 0.0
    audio = 0.0
    say(
        f"{'recording':<14} {'clustering':>10} {'enrolled':>9} {'left out':>9}  speakers c/e/l/true  left out"
    )
    for reco_id, source in sources.items():
        if reco_id not in enrollment or reco_id not in reference:
            say(f"{reco_id}: no enrollment or reference, skipped")
            continue
        wav = diarizer.load(source, reco_id)
        audio += len(wav) / diarizer.sample_rate
        outputs = diarizer.segment([wav])[0]
        embedded = [(b, diarizer.embed_inputs(b.inputs)) for b in diarizer.piece_inputs(outputs, wav)]
        t0 = time.perf_counter()
        profiles, names = diarizer.enroll(enrollment[reco_id], reco_id)
        enroll_seconds += time.perf_counter() - t0
        left_out[reco_id] = most_talkative(reference[reco_id])
        keep = [k for k, name in enumerate(names) if name != left_out[reco_id]]
        given = {
            "clustering": RecordingInput(reco_id, wav),
            "enrolled": RecordingInput(reco_id, wav, profiles=profiles, profile_names=names),
            "one left out": RecordingInput(
                reco_id, wav, profiles=profiles[keep], profile_names=tuple(names[k] for k in keep)
            ),
        }
        for run, recording in given.items():
            runs[run][reco_id] = diarizer.finish(recording, outputs, len(wav), embedded).annotation
        ref = {reco_id: reference[reco_id]}
        der = [score(ref, {reco_id: runs[r][reco_id]}, uem=uem, collar=0.25).corpus.der for r in runs]
        counts = "/".join(str(len(runs[r][reco_id].speakers)) for r in runs)
        label = mapped_speaker(reference[reco_id], runs["one left out"][reco_id], left_out[reco_id])
        labels[reco_id] = label
        wrong = label is not None and label in set(names) - {left_out[reco_id]}
        true = len(reference[reco_id].speakers)
        say(
            f"{reco_id:<14} {der[0]:10.3f} {der[1]:9.3f} {der[2]:9.3f}  {counts}/{true}"
            f"  {left_out[reco_id]} -> {label}{' (an enrolled name!)' if wrong else ''}"
        )
    ref = {r: reference[r] for r in runs["clustering"]}
    say("")
    for collar in (0.25, 0.0):
        figures = "  ".join(f"{r} {score(ref, runs[r], uem=uem, collar=collar).corpus.der:.4f}" for r in runs)
        say(f"DER at collar {collar:g} (overlap scored): {figures}")
    named = sum(
        labels[r] is not None and labels[r] in {n for n, _ in enrollment[r]} - {left_out[r]} for r in ref
    )
    say(f"left-out speakers labelled with an enrolled name: {named} of {len(ref)} recordings")
    say(f"enrollment: {enroll_seconds:.1f} s for {len(ref)} recordings' files ({audio:.0f} s of recordings)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
