"""The README and docs/*.md say only what runs: their commands, links, paths and config tables.

Every shell block of README.md, docs/*.md and jobs/README.md is split as a shell would split
it (continuation lines joined, comments dropped, ``&&`` / ``;`` / ``|`` / ``&`` separate
commands), and each command is checked against the real thing without running it:

* ``diar SUB ...`` with diar's own parser (``diar.cli.build_parser``); ``diar run ...`` also
  with the job's parser, ``diar bench NAME ...`` with that benchmark's parser;
* ``python -m jobs.diarize|jobs.profiles ...`` with the job's parser;
* ``--config FILE`` / ``--set KEY=VALUE`` of any of them load with ``load_config`` (known keys,
  allowed values);
* ``ray ...`` with Ray's own command line (click), ``ray job submit ... -- CMD`` checking CMD;
  ``docker build``: its Dockerfile exists and declares every ``--build-arg``; ``kubectl``: the
  manifests it applies exist and define the resources it names. These cluster commands are
  only parsed, never run (they need a cloud, a registry or a Kubernetes cluster; ``ray job
  submit`` against a local head is run by tests/test_jobs/test_job_submit.py);
* ``pip install`` uses ``-c constraints.txt`` and names extras that diar declares;
  ``./scripts/*.sh`` (or ``bash scripts/*.sh``) exist, are executable and pass ``bash -n``; a
  script given arguments checks them itself: ``scripts/gpu-check.sh ... --dry-run`` parses its
  options and prints the ``diar bench gpu`` commands it would run, which are checked in turn;
* every file of the repository a command names (``configs/...``, ``diar/data/...``) exists;
* a few shell utilities (``cd``, ``echo``, ``ls``, ...) only get the path check; any other
  program fails the test: teach this file how to check it.

Besides: links between the pages (and their ``#anchors``) resolve, repository paths in inline
code exist, the configuration tables' keys and defaults equal ``diar.config``'s and every
config key is documented, Python blocks compile and their imports resolve, JSON and RTTM
examples parse, and the README front page stays under 150 lines.

The slow test runs the README's quick start as written, in a scratch folder beside links to
the checkout's ``diar/``, ``jobs/`` and ``configs/``: every block of its "Quick start" section
made only of ``diar`` and ``python`` commands (the real default model on the bundled sample,
and the Ray job on a fresh local Ray), and its Python block; its ``ray start`` / ``ray job
submit`` block is only parsed.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import importlib
import io
import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib.metadata import metadata
from itertools import pairwise
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import yaml
from helpers import REPO

PAGES = [REPO / "README.md", REPO / "jobs" / "README.md", *sorted((REPO / "docs").glob("*.md"))]
SHELL = {"bash", "sh", "shell", "console"}
#: Tokens that start with one of these name a file of the repository.
REPO_PATH = re.compile(r"^(?:\./)?(?:configs|scripts|diar|jobs|tests|docs|\.ci)/")
OPERATORS = {"&&", "||", ";", "|", "&"}
REDIRECTS = {">", ">>", "<"}
JOBS = ("jobs.diarize", "jobs.profiles")
FRONT_PAGE_LINES = 150
QUICK_START = "Quick start"
#: Shell utilities whose arguments are only checked for repository paths.
UTILITIES = {"cd", "echo", "export", "mkdir", "ls", "cat", "head", "tail"}
#: The programs the quick start may run (anything else there is only parsed).
RUNNABLE = {"diar", "python"}


# --------------------------------------------------------------------------- the pages


@dataclass(frozen=True)
class Block:
    """One fenced code block: where it starts, its language and the heading above it."""

    path: Path
    line: int  # of its first line of code
    lang: str
    text: str
    section: str


@dataclass(frozen=True)
class Command:
    """One shell command of a block, as the words a shell would pass to the program."""

    path: Path
    line: int
    argv: tuple[str, ...]

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line}: {shlex.join(self.argv)}"


def blocks(path: Path) -> list[Block]:
    found: list[Block] = []
    section, lang, start, code = "", None, 0, []
    for n, line in enumerate(path.read_text(encoding="utf-8").split("\n"), 1):
        if lang is None and line.startswith("```"):
            lang, start, code = line[3:].strip(), n + 1, []
        elif lang is not None and line.startswith("```"):
            found.append(Block(path, start, lang, "\n".join(code), section))
            lang = None
        elif lang is not None:
            code.append(line)
        elif line.startswith("#"):
            section = line.lstrip("#").strip()
    return found


def prose(path: Path) -> str:
    """The page without its fenced blocks."""
    return re.sub(r"^```.*?^```", "", path.read_text(encoding="utf-8"), flags=re.M | re.S)


def commands(block: Block) -> list[Command]:
    found: list[Command] = []
    lines = block.text.split("\n")
    i = 0
    while i < len(lines):
        first, text = i, lines[i]
        while text.endswith("\\") and i + 1 < len(lines):  # a continued line
            i += 1
            text = text[:-1] + " " + lines[i]
        i += 1
        lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        argv: list[str] = []
        tokens = iter([*lexer, ";"])
        for token in tokens:
            if token in OPERATORS:
                if argv:
                    found.append(Command(block.path, block.line + first, tuple(argv)))
                argv = []
            elif token in REDIRECTS:
                next(tokens)  # the file: not the program's argument
            else:
                argv.append(token)
    return found


def shell_blocks() -> list[Block]:
    return [b for page in PAGES for b in blocks(page) if b.lang in SHELL]


def all_commands() -> list[Command]:
    return [c for b in shell_blocks() for c in commands(b)]


def ids(found: list[Command]) -> list[str]:
    return [f"{c.path.relative_to(REPO)}:{c.line}:{c.argv[0]}" for c in found]


# --------------------------------------------------------------------------- parsing commands


def parse(
    parser: argparse.ArgumentParser, args: list[str], where: str
) -> tuple[argparse.Namespace, list[str]]:
    """``parser.parse_known_args(args)``, options spelled out in full (``--num-speaker`` for
    ``--num-speakers`` is a typo, though argparse would take it); an argparse error fails the
    test with its message."""
    exact(parser)
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            return parser.parse_known_args(args)
    except SystemExit as e:
        if e.code == 0:  # --help
            return argparse.Namespace(), []
        pytest.fail(f"{where}\n  {err.getvalue().strip().splitlines()[-1]}")


def exact(parser: argparse.ArgumentParser) -> None:
    """No abbreviated options, in ``parser`` and its subcommands' parsers."""
    parser.allow_abbrev = False
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                exact(sub)


def check_diar(args: list[str], where: str) -> None:
    from diar.cli import build_parser

    ns, unknown = parse(build_parser(), args, where)
    if getattr(ns, "_forwards", False):  # diar run: as diar.cli.main hands it to the job
        check_job("jobs.diarize", [*unknown, *ns.job_args], where)
    elif unknown:
        pytest.fail(f"{where}\n  unrecognized arguments: {' '.join(unknown)}")
    elif getattr(ns, "command", None) == "bench":
        check_bench(ns.name, list(ns.options), where)


def job_parser(module: str) -> argparse.ArgumentParser:
    """The parser of ``python -m MODULE`` (built as diar.cli.entry_point builds it)."""
    from diar.cli import add_verbose

    parser = argparse.ArgumentParser(prog=f"python -m {module}")
    add_verbose(parser)
    importlib.import_module(module).add_arguments(parser)
    return parser


def check_job(module: str, args: list[str], where: str) -> None:
    _, unknown = parse(job_parser(module), args, where)
    if unknown:
        pytest.fail(f"{where}\n  unrecognized arguments: {' '.join(unknown)}")


class _Parsed(Exception):
    """Raised in place of running a benchmark once its options are parsed."""


def check_bench(name: str, args: list[str], where: str) -> None:
    """A benchmark builds its parser inside ``main``: run ``main`` up to its ``parse_args``."""
    from diar.commands.bench import BENCHMARKS

    module = importlib.import_module(BENCHMARKS[name])
    real_parse_args = argparse.ArgumentParser.parse_args

    def parse_only(self: argparse.ArgumentParser, *a: Any, **k: Any) -> Any:
        exact(self)
        raise _Parsed(real_parse_args(self, *a, **k))

    err = io.StringIO()
    with mock.patch.object(argparse.ArgumentParser, "parse_args", parse_only):
        try:
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                module.main(args)
        except _Parsed:
            return
        except SystemExit as e:
            if e.code == 0:
                return
            pytest.fail(f"{where}\n  {err.getvalue().strip().splitlines()[-1]}")
    pytest.fail(f"{where}\n  diar bench {name} returned without parsing its options")


def check_config(args: list[str], where: str) -> None:
    """``--config FILE`` and ``--set KEY=VALUE`` load: known keys, values their keys allow."""
    from diar.config import ConfigError, load_config

    config, sets = None, []
    for flag, value in pairwise([*args, ""]):
        if flag.startswith("--config="):
            config = flag.split("=", 1)[1]
        elif flag == "--config":
            config = value
        elif flag.startswith("--set="):
            sets.append(flag.split("=", 1)[1])
        elif flag == "--set":
            sets.append(value)
    if config is None and not sets:
        return
    try:
        load_config(REPO / config if config else None, sets)
    except ConfigError as e:
        pytest.fail(f"{where}\n  {e}")


def check_python(args: list[str], where: str) -> None:
    if args[:1] != ["-m"] or len(args) < 2:
        pytest.fail(f"{where}\n  only `python -m MODULE` is checked here")
    module, rest = args[1], args[2:]
    if module in JOBS:
        check_job(module, rest, where)
    elif module != "venv":
        pytest.fail(f"{where}\n  python -m {module}: not a module these docs should run")


def check_pip(args: list[str], where: str) -> None:
    if args[:1] != ["install"]:
        pytest.fail(f"{where}\n  only `pip install` is expected")
    if "-c" not in args or args[args.index("-c") + 1] != "constraints.txt":
        pytest.fail(f"{where}\n  pip install without -c constraints.txt may pull a CUDA build of torch")
    extras = set(metadata("diar").get_all("Provides-Extra") or [])
    for flag, spec in pairwise(args):
        if flag == "-e":
            named = re.fullmatch(r"\.(?:\[([\w,-]+)\])?", spec)
            if not named:
                pytest.fail(f"{where}\n  -e {spec}: expected . or .[extras]")
            missing = set((named.group(1) or "").split(",")) - extras - {""}
            if missing:
                pytest.fail(
                    f"{where}\n  extras {sorted(missing)} are not declared (declared: {sorted(extras)})"
                )


def check_script(program: str, args: list[str], where: str) -> None:
    script = REPO / program
    if not (script.is_file() and os.access(script, os.X_OK)):
        pytest.fail(f"{where}\n  {program} is not an executable file of the repository")
    syntax = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    if syntax.returncode:
        pytest.fail(f"{where}\n  bash -n {program}: {syntax.stderr.strip()}")
    name = script.resolve().relative_to(REPO).as_posix()
    if name in SCRIPT_ARGS:
        SCRIPT_ARGS[name](args, where)
    elif args:
        pytest.fail(f"{where}\n  {name} takes arguments here: teach tests/test_docs.py to check them")


def check_gpu_check(args: list[str], where: str) -> None:
    """The script's own option parsing (``--dry-run``: parse, print the commands, run nothing),
    then the ``diar bench gpu`` commands it prints with that benchmark's parser."""
    cut = args.index("--") if "--" in args else len(args)
    dry = subprocess.run(
        ["bash", str(REPO / "scripts" / "gpu-check.sh"), *args[:cut], "--dry-run", *args[cut:]],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if dry.returncode:
        pytest.fail(f"{where}\n  {dry.stderr.strip()}")
    printed = [shlex.split(line) for line in dry.stdout.splitlines()]
    if not printed or any(argv[:3] != ["diar", "bench", "gpu"] for argv in printed):
        pytest.fail(f"{where}\n  --dry-run printed no diar bench gpu commands: {dry.stdout!r}")
    for argv in printed:
        check_argv(argv, f"{where}\n  (runs {shlex.join(argv)})")


#: Scripts that take arguments, and how to check them.
SCRIPT_ARGS: dict[str, Callable[[list[str], str], None]] = {"scripts/gpu-check.sh": check_gpu_check}


def check_ray(args: list[str], where: str) -> None:
    """Ray's own command line parses the options (``make_context`` runs no command)."""
    import click
    from ray.scripts.scripts import cli

    command: click.Command = cli
    try:
        context = command.make_context("ray", list(args))
        while isinstance(command, click.Group):
            rest = [*getattr(context, "_protected_args", []), *context.args]
            name, sub, rest = command.resolve_command(context, rest)
            assert sub is not None and name is not None
            command, context = sub, sub.make_context(name, rest, parent=context)
    except click.UsageError as e:
        pytest.fail(f"{where}\n  {e.format_message()}")
    entrypoint = context.params.get("entrypoint")
    if entrypoint:  # ray job submit ... -- CMD
        check_argv(list(entrypoint), where)


def manifests() -> Iterator[dict[str, Any]]:
    for path in sorted((REPO / "configs" / "cluster").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if isinstance(doc, dict) and "kind" in doc:
                yield doc


def check_kubectl(args: list[str], where: str) -> None:
    verb = args[0] if args else ""
    if verb == "apply":
        files = [value for flag, value in pairwise(args) if flag == "-f"]
        if not files:
            pytest.fail(f"{where}\n  kubectl apply without -f FILE")
        for file in files:
            list(yaml.safe_load_all((REPO / file).read_text(encoding="utf-8")))
    elif verb in ("get", "delete", "describe"):
        kind, name = [*args[1:3], "", ""][:2]
        if not any(d["kind"].lower() == kind.lower() and d["metadata"]["name"] == name for d in manifests()):
            pytest.fail(f"{where}\n  no manifest in configs/cluster/ defines {kind} {name}")
    elif verb != "logs":
        pytest.fail(f"{where}\n  kubectl {verb}: not checked here")


def check_docker(args: list[str], where: str) -> None:
    verb = args[0] if args else ""
    if verb == "build":
        values = dict(pairwise(args))
        dockerfile = REPO / values.get("-f", "Dockerfile")
        declared = set(re.findall(r"^ARG\s+(\w+)", dockerfile.read_text(encoding="utf-8"), re.M))
        for flag, value in pairwise(args):
            if flag == "--build-arg" and value.split("=")[0] not in declared:
                pytest.fail(f"{where}\n  {dockerfile.name} declares no ARG {value.split('=')[0]}")
        if args[-1] != ".":
            pytest.fail(f"{where}\n  docker build's context should be the checkout (.)")
    elif verb != "push":
        pytest.fail(f"{where}\n  docker {verb}: not checked here")


def check_paths(argv: list[str], where: str) -> None:
    for token in argv:
        for word in (token, *token.split("=")[1:]):
            if REPO_PATH.match(word) and not (REPO / word).exists():
                pytest.fail(f"{where}\n  {word} does not exist in the repository")


def check_source(args: list[str], where: str) -> None:
    if args != [".venv/bin/activate"]:  # the one the set-up scripts make
        pytest.fail(f"{where}\n  only . .venv/bin/activate is expected")


CHECKS: dict[str, Callable[[list[str], str], None]] = {
    "diar": check_diar,
    "python": check_python,
    "python3": check_python,
    "pip": check_pip,
    "ray": check_ray,
    "kubectl": check_kubectl,
    "docker": check_docker,
    ".": check_source,
    "source": check_source,
}


def check_argv(argv: list[str], where: str) -> None:
    while argv and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", argv[0]):  # VAR=value before the program
        argv = argv[1:]
    program, args = argv[0], argv[1:]
    check_paths(argv, where)
    if program == "bash" and args and REPO_PATH.match(args[0]):  # bash SCRIPT ARGS
        check_script(args[0], args[1:], where)
    elif REPO_PATH.match(program):
        check_script(program, args, where)
    elif program in CHECKS:
        CHECKS[program](args, where)
        if program in ("diar", "python", "python3"):
            check_config(args, where)
    elif program not in UTILITIES:
        pytest.fail(f"{where}\n  {program}: a program tests/test_docs.py does not know how to check")


# --------------------------------------------------------------------------- the tests

COMMANDS = all_commands()


@pytest.mark.parametrize("command", COMMANDS, ids=ids(COMMANDS))
def test_command_parses_as_written(command: Command) -> None:
    check_argv(list(command.argv), command.where)


def test_every_page_is_checked() -> None:
    """The commands were found (a change in the block syntax would silently check nothing)."""
    programs = {c.argv[0] for c in COMMANDS}
    assert {"diar", "python", "ray", "docker", "kubectl", "pip", "./scripts/demo.sh"} <= programs
    assert len(COMMANDS) > 40


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["scripts/gpu-check.sh", "--devcie", "cpu"], "unknown option --devcie"),
        (["bash", "scripts/gpu-check.sh", "run", "--limit", "all"], "--limit is a number"),
        (["scripts/gpu-check.sh", "run", "--", "--precision", "fp32"], "unrecognized arguments: --precision"),
        (["./scripts/demo.sh", "--fast"], "takes arguments here"),
    ],
)
def test_a_scripts_wrong_arguments_fail(argv: list[str], message: str) -> None:
    """The script check is not only ``bash -n``: the options reach the script's own parser and
    the benchmark's."""
    with pytest.raises(pytest.fail.Exception, match=message):
        check_argv(argv, "example")


def test_front_page_is_short_and_starts_with_the_two_commands() -> None:
    readme = REPO / "README.md"
    assert len(readme.read_text(encoding="utf-8").split("\n")) < FRONT_PAGE_LINES
    first = next(b for b in blocks(readme) if b.lang in SHELL)
    assert [c.argv for c in commands(first)] == [("./scripts/demo.sh",), ("./scripts/test.sh",)]


def slug(heading: str) -> str:
    """GitHub's anchor of a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    return {slug(m) for m in re.findall(r"^#+ (.+)$", prose(path), re.M)}


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(REPO)) for p in PAGES])
def test_links_and_paths_resolve(page: Path) -> None:
    text = re.sub(r"`[^`\n]*`", "", prose(page))  # links are not in code
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+://", target):
            continue
        file, _, anchor = target.partition("#")
        linked = (page.parent / file).resolve() if file else page
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(f"{target}: no heading #{anchor} in {linked.relative_to(REPO)}")
    for span in re.findall(r"`([^`\n]+)`", prose(page)):
        if REPO_PATH.match(span) and not re.search(r"[\s<>*{}]", span) and not (REPO / span).exists():
            broken.append(f"`{span}`: no such file in the repository")
    assert not broken, f"{page.relative_to(REPO)}: " + "; ".join(broken)


def config_defaults() -> dict[str, Any]:
    from diar.config import Config, to_dict

    def flat(d: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
        for k, v in d.items():
            yield from flat(v, f"{prefix}{k}.") if isinstance(v, dict) else [(prefix + k, v)]

    return dict(flat(to_dict(Config())))


def documented_defaults() -> Iterator[tuple[str, str, str]]:
    """(page, key, documented default) of every table row of docs/*.md that starts with a key."""
    for page in sorted((REPO / "docs").glob("*.md")):
        for row in re.findall(r"^\|(.+)\|$", prose(page), re.M):
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", row)]
            keys = re.fullmatch(r"`([a-z_][a-z_.]*)`(?: / `([a-z_.]+)`)?", cells[0])
            if not keys or len(cells) < 2:
                continue
            first, second = keys.groups()
            names, values = [first], [cells[1].strip("`")]
            if second:  # `section.a` / `b`: two keys, two defaults
                names.append(second if "." in second else f"{first.rsplit('.', 1)[0]}.{second}")
                values = [v.strip().strip("`") for v in cells[1].split(" / ")]
            for name, value in zip(names, values, strict=True):
                yield str(page.relative_to(REPO)), name, value


def test_configuration_tables_match_the_config() -> None:
    defaults = config_defaults()
    wrong, documented = [], set()
    for page, key, value in documented_defaults():
        if key in defaults:
            documented.add(key)
            if yaml.safe_load(value) != defaults[key]:
                wrong.append(f"{page}: {key} documented as {value}, default is {defaults[key]!r}")
    assert not wrong, "; ".join(wrong)
    undocumented = sorted(set(defaults) - documented)
    assert not undocumented, f"config keys without a row in docs/*.md (docs/configuration.md): {undocumented}"


def python_blocks() -> list[Block]:
    return [b for page in PAGES for b in blocks(page) if b.lang == "python"]


@pytest.mark.parametrize("block", python_blocks(), ids=lambda b: f"{b.path.relative_to(REPO)}:{b.line}")
def test_python_block_compiles_and_imports_resolve(block: Block) -> None:
    tree = ast.parse(block.text, f"{block.path.relative_to(REPO)}:{block.line}")
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            module = importlib.import_module(node.module)
            missing = [a.name for a in node.names if not hasattr(module, a.name)]
            assert not missing, f"{block.path.name}:{block.line}: {node.module} has no {missing}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                importlib.import_module(alias.name)


def test_json_and_rttm_examples_parse() -> None:
    from diar.formats.rttm import read_rttm

    checked = 0
    for block in (b for page in PAGES for b in blocks(page)):
        if block.lang == "json":
            json.loads(block.text)
            checked += 1
        elif block.lang == "text" and block.text.startswith("SPEAKER "):
            assert read_rttm(io.StringIO(block.text + "\n")), block.text
            checked += 1
    assert checked >= 2


@pytest.mark.corpus
def test_corpus_paths_exist(corpus: Path) -> None:
    """The ../shared/corpus files the pages name (in commands and inline code), where it is present."""
    words = [w for c in COMMANDS for token in c.argv for w in (token, *token.split("=")[1:])]
    for page in PAGES:
        words += [w for span in re.findall(r"`([^`]+)`", prose(page)) for w in span.split()]
    named = {w for w in words if w.startswith("../shared/corpus/")}
    assert named, "no page names a file of ../shared/corpus any more: drop this test"
    assert not [w for w in sorted(named) if not (REPO / w).exists()]


def quick_start() -> list[Block]:
    return [b for b in blocks(REPO / "README.md") if b.section == QUICK_START]


@pytest.mark.slow
def test_quick_start_runs_as_written(tmp_path: Path) -> None:
    """The README's quick start, command for command, on the bundled sample and the real models."""
    for name in ("diar", "jobs", "configs"):
        (tmp_path / name).symlink_to(REPO / name)
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "HF_HUB_OFFLINE": "1",
        "RAY_AUTH_MODE": "disabled",
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    env.pop("RAY_ADDRESS", None)  # a newcomer's shell has none: the job starts a local Ray
    ran, only_parsed = [], []
    for block in quick_start():
        where = f"README.md:{block.line}"
        if block.lang == "python":
            argv = [sys.executable, "-c", block.text]
        elif block.lang in SHELL and {c.argv[0] for c in commands(block)} <= RUNNABLE:
            argv = ["bash", "-euo", "pipefail", "-c", block.text]
        else:
            only_parsed.append(where)
            continue
        done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"{where} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
        ran.append(where)
    assert len(ran) >= 4, f"ran {ran}, only parsed {only_parsed}: the quick start lost its commands"
    outputs = [
        value
        for block in quick_start()
        if block.lang in SHELL
        for c in commands(block)
        if c.argv[0] in RUNNABLE
        for flag, value in pairwise(c.argv)
        if flag in ("-o", "--out")
    ]
    assert outputs
    for out in outputs:
        rttm = tmp_path / out / "corpus.rttm" if (tmp_path / out).is_dir() else tmp_path / out
        assert rttm.read_text().startswith("SPEAKER sim01_2spk 1 "), out
