"""Options shared by the ``diar`` subcommands and the Ray jobs' entry points."""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from diar.config import Config
    from diar.outputs import FileSet


def add_config_option(parser: argparse.ArgumentParser, example: str = "configs/default.yaml") -> None:
    """``--config FILE`` and repeatable ``--set KEY=VALUE`` (dotted keys, YAML values)."""
    parser.add_argument("--config", default=None, help=f"YAML config (e.g. {example}); defaults if omitted")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value by dotted key, e.g. --set clustering.method=agglomerative (repeatable)",
    )


def add_scoring_arguments(parser: argparse.ArgumentParser, reference: str, required: bool = False) -> None:
    """``--ref`` (``reference``: its help), ``--uem``, ``--collar`` and ``--skip-overlap``: what
    ``diar score`` scores and how, the same options wherever errors are counted."""
    parser.add_argument("--ref", required=required, default=None, metavar="REF.rttm", help=reference)
    parser.add_argument(
        "--uem", metavar="UEM", default=None, help="scored regions, '<reco> <chnl> <start> <end>' lines"
    )
    parser.add_argument(
        "--collar",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="seconds not scored on each side of every reference boundary (md-eval -c)",
    )
    parser.add_argument(
        "--skip-overlap", action="store_true", help="do not score regions where reference speakers overlap"
    )


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """``--config``, ``--set``, ``--model``, ``--model-dir``, ``--device`` (embedder commands)."""
    add_config_option(parser, "configs/profile.yaml")
    parser.add_argument(
        "--model",
        default=None,
        help="embedder name (campplus, ge2e, xvector: the embedder registry, checked when the command runs); "
        "shortcut for --set embedding.name=NAME (unset: the config's)",
    )
    parser.add_argument(
        "--model-dir",
        default=None,
        help="weights: a model directory or file, or a hub id in the local cache (campplus, xvector); "
        "shortcut for --set embedding.model_dir=DIR",
    )
    parser.add_argument("--device", default=None, help="cpu, cuda or auto; shortcut for embedding.device")


def config_from_args(args: argparse.Namespace) -> Config:
    """The :class:`~diar.config.Config` of ``--config`` + ``--set`` + the shortcuts."""
    from diar.config import ConfigError, load_config
    from diar.models.base import EMBEDDERS
    from diar.registry import UnknownNameError

    # typed values, not KEY=VALUE overrides: a path must not be parsed as YAML
    shortcuts = {"model": "embedding.name", "model_dir": "embedding.model_dir", "device": "embedding.device"}
    values = {key: getattr(args, flag) for flag, key in shortcuts.items() if getattr(args, flag) is not None}
    config = load_config(args.config, list(args.overrides), values)
    import diar.models  # noqa: F401  (registers the embedders)

    try:
        EMBEDDERS.get(config.embedding.name)
    except UnknownNameError as e:
        raise ConfigError(f"embedding.name: {e}") from None
    return config


def input_files(paths: Iterable[str | None], config: Config | None = None) -> FileSet:
    """Every local file a command reads: ``paths`` (manifests, audio, the config file) and the
    profile inputs ``config`` names (``profile.enroll`` and its audio, ``profile.profile_scp``
    with its ark files and speaker names), to check outputs against before any work."""
    from diar.manifests import ark_path, names_path_for, read_enrollment, read_profile_scp
    from diar.outputs import FileSet

    files = FileSet(p for p in paths if p)
    if config is not None:
        if config.profile.enroll:
            files.add(config.profile.enroll)
            for entries in read_enrollment(config.profile.enroll).values():
                for _, source in entries:
                    files.add(source)
        if config.profile.profile_scp:
            files.add(config.profile.profile_scp)
            files.add(str(names_path_for(config.profile.profile_scp)))
            for value in read_profile_scp(config.profile.profile_scp).values():
                files.add(ark_path(value))
    return files
