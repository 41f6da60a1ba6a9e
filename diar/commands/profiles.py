"""Make speaker profiles from enrollment audio, for profile-mode diarization.

Reads an enrollment list (``<reco-id> <speaker> <path-or-URL>`` per line; a speaker
may have several files) and writes one profile matrix per recording: one row per
speaker, in order of first appearance, each the whole-utterance embedding averaged
over that speaker's files. OUT/profile.ark holds the float32 matrices (speakers x
dim) keyed by recording id, OUT/profile.scp the lines ``<reco-id> <ark-path>:<offset>``
(readable by kaldiio), OUT/profile.names the lines ``<reco-id> <speaker1> <speaker2> ...``
naming the rows. Give OUT/profile.scp to ``diar run --profile-scp`` with the same
embedder. The same work sharded over a Ray cluster: ``python -m jobs.profiles``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from diar.outputs import FileSet

HELP = "make speaker profiles (Kaldi ark/scp) from an enrollment list"

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--enroll",
        required=True,
        metavar="ENROLL",
        help="enrollment list '<reco-id> <speaker> <path-or-URL>'",
    )
    parser.add_argument(
        "--out",
        required=True,
        help="output folder, created if missing: profile.ark, profile.scp, profile.names",
    )
    from diar.commands.common import add_config_arguments

    add_config_arguments(parser)


def check_profile_outputs(out: str, inputs: FileSet, extra: tuple[str, ...] = ()) -> None:
    """Before any work: OUT's profile.ark / .scp / .names (and ``extra`` names in OUT) are no
    input and can be written (InputError otherwise)."""
    from diar.manifests import profile_paths
    from diar.outputs import check_outputs

    paths = [*profile_paths(os.path.join(out, "")), *(os.path.join(out, name) for name in extra)]
    check_outputs([("--out", str(path)) for path in paths], inputs)


def run(args: argparse.Namespace) -> int:
    from diar.commands.common import config_from_args, input_files
    from diar.manifests import read_enrollment, write_profiles
    from diar.outputs import writing
    from diar.pipelines.profile import ProfileMaker

    config = config_from_args(args)
    enrollment = read_enrollment(args.enroll)
    if not enrollment:
        logger.warning("%s lists no enrollment files; writing empty profile files", args.enroll)
    sources = [source for files in enrollment.values() for _, source in files]
    check_profile_outputs(args.out, input_files([args.enroll, args.config, *sources]))
    maker = ProfileMaker(config)
    profiles = {}
    for i, (reco_id, files) in enumerate(enrollment.items(), start=1):
        matrix, names = maker(reco_id, files)
        profiles[reco_id] = (matrix, names)
        logger.info(
            "%d/%d %s: %d speakers from %d files", i, len(enrollment), reco_id, len(names), len(files)
        )
    with writing("--out", args.out):
        scp = write_profiles(os.path.join(args.out, ""), profiles)
    sys.stdout.write(f"{scp}\n")
    return 0
