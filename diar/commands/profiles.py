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
import dataclasses
import logging
import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from diar.config import Config

HELP = "make speaker profiles (Kaldi ark/scp) from an enrollment list"

logger = logging.getLogger(__name__)


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """``--config``, ``--set``, ``--model``, ``--model-dir``, ``--device`` (shared with jobs.profiles)."""
    parser.add_argument("--config", default=None, help="YAML config (e.g. configs/xvector.yaml)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value by dotted key, e.g. --set profile.enroll_vad=false (repeatable)",
    )
    parser.add_argument(
        "--model",
        default=None,
        help="embedder name (ge2e, xvector); shortcut for --set embedding.name=NAME (unset: the config's)",
    )
    parser.add_argument(
        "--model-dir",
        default=None,
        help="model directory or ModelScope id; shortcut for --set embedding.model_dir=DIR",
    )
    parser.add_argument("--device", default=None, help="cpu, cuda or auto; shortcut for embedding.device")


def config_from_args(args: argparse.Namespace) -> Config:
    """The :class:`~diar.config.Config` of ``--config`` + ``--set`` + the shortcuts."""
    from diar.config import ConfigError, load_config
    from diar.models.base import EMBEDDERS
    from diar.registry import UnknownNameError

    config = load_config(args.config, list(args.overrides))
    # set directly, not as KEY=VALUE overrides: a path must not be parsed as YAML
    for flag in ("model", "model_dir", "device"):
        value = getattr(args, flag)
        if value is not None:
            field = "name" if flag == "model" else flag
            config.embedding = dataclasses.replace(config.embedding, **{field: value})
    import diar.models  # noqa: F401  (registers the embedders)

    try:
        EMBEDDERS.get(config.embedding.name)
    except UnknownNameError as e:
        raise ConfigError(f"embedding.name: {e}") from None
    return config


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
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from diar.manifests import read_enrollment, write_profiles
    from diar.pipelines.profile import ProfileMaker

    config = config_from_args(args)
    enrollment = read_enrollment(args.enroll)
    if not enrollment:
        logger.warning("%s lists no enrollment files; writing empty profile files", args.enroll)
    maker = ProfileMaker(config)
    profiles = {}
    for i, (reco_id, files) in enumerate(enrollment.items(), start=1):
        matrix, names = maker(reco_id, files)
        profiles[reco_id] = (matrix, names)
        logger.info(
            "%d/%d %s: %d speakers from %d files", i, len(enrollment), reco_id, len(names), len(files)
        )
    scp = write_profiles(os.path.join(args.out, ""), profiles)
    sys.stdout.write(f"{scp}\n")
    return 0
