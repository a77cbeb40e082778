"""The documentation: README.md and the MkDocs site under docs/.

- ``mkdocs build --strict`` passes (broken links and anchors between pages, pages left out
  of the nav and unknown objects in the API pages are warnings, hence failures), and the
  site asks for no remote fonts.
- Every ``kedro run ...`` and ``brstnet ...`` line in the fenced code blocks of README.md
  and docs/ is one that runs: its options parse (the project's own ``kedro run`` command,
  ``brstnet``'s parsers), the pipelines it names are registered for its configuration,
  every ``--params`` key is a valid parameter (``brstnet.config.ProjectParams`` against the
  committed ``conf/``, with ``--env``), ``--namespaces`` exist, ``--runner`` imports and
  the Dask runner's ``--runner-params`` are valid Dask settings. Nothing is run.
- Every dotted ``brstnet.`` name the pages mention (``brstnet.st.readers.LAYOUTS``) still
  imports: when code moves, the page that names it fails here until it is updated.
"""

from __future__ import annotations

import argparse
import importlib
import io
import os
import re
import shlex
import shutil
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from brstnet.metrics.registry import ENTRY_POINTS as METRIC_PLUGINS
from brstnet.st.readers import ENTRY_POINTS as LAYOUT_PLUGINS

ROOT = Path(__file__).resolve().parents[1]
# Kedro registers its resolvers again with every config loader made here
pytestmark = pytest.mark.filterwarnings("ignore:register_new_resolver:UserWarning")

DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
README_MAX_LINES = 200


class CommandError(AssertionError):
    """A documented command that would not run as written."""


# --- finding the commands ------------------------------------------------------------


def fenced_blocks(text: str) -> list[tuple[int, list[str]]]:
    """The fenced code blocks of a Markdown text: (line number of the first line, lines)."""
    blocks, current, start, fence = [], [], 0, None
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if fence is None:
            if stripped.startswith(("```", "~~~")):
                fence, current, start = stripped[:3], [], number + 1
        elif stripped.startswith(fence) and stripped.strip(fence[0]) == "":
            blocks.append((start, current))
            fence = None
        else:
            current.append(line)
    return blocks


def command_lines(lines: list[str]) -> list[tuple[int, str]]:
    """Logical lines of a code block (``\\`` continuations joined), with their offsets."""
    out, pending, first = [], "", 0
    for offset, line in enumerate(lines):
        if not pending:
            first = offset
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        out.append((first, pending + line))
        pending = ""
    if pending:
        out.append((first, pending))
    return out


def split_command(line: str) -> list[str] | None:
    """The arguments of a ``kedro run`` or ``brstnet`` line (``KEDRO_ENV=...`` kept as
    ``--env``), or None for any other line."""
    # placeholders such as <mlflow run id> are one word
    line = re.sub(r"<[^<>\n]*>", lambda m: m.group(0).replace(" ", "_"), line)
    try:
        words = shlex.split(line, comments=True)
    except ValueError:
        return None
    env = []
    while words and (re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=\S*", words[0]) or words[0] == "time"):
        if words[0].startswith("KEDRO_ENV="):
            env = ["--env", words[0].split("=", 1)[1]]
        words = words[1:]
    if not words:
        return None
    program = Path(words[0]).name
    if program == "kedro" and words[1:2] == ["run"]:
        return ["kedro", "run", *env, *words[2:]]
    if program == "brstnet":
        if words[1:2] == ["run"]:
            return ["kedro", "run", *env, *words[2:]]
        return ["brstnet", *words[1:]]
    return None


def inline_commands(text: str) -> list[tuple[int, str]]:
    """Commands quoted in prose (`kedro run --pipelines=training ...`, outside fenced
    blocks), with their line numbers: those with an option and no placeholder (`<name>`,
    `...`), which name a whole command rather than the program."""
    fenced: set[int] = set()
    for start, lines in fenced_blocks(text):
        fenced.update(range(start - 1, start + len(lines) + 1))
    prose = "\n".join(
        "" if number in fenced else line for number, line in enumerate(text.splitlines(), 1)
    )
    found = []
    for span in re.finditer(r"(?<!`)`([^`]+)`(?!`)", prose):
        command = " ".join(span.group(1).split())
        if "--" in command and "<" not in command and "..." not in command:
            found.append((prose.count("\n", 0, span.start()) + 1, command))
    return found


def documented_commands() -> list[tuple[str, list[str]]]:
    """Every ``kedro run`` / ``brstnet`` command in README.md and docs/ (in fenced code
    blocks, and complete ones quoted in prose), with where it is."""
    found = []
    for path in DOC_FILES:
        text, name = path.read_text(), path.relative_to(ROOT)
        for start, lines in fenced_blocks(text):
            for offset, line in command_lines(lines):
                args = split_command(line)
                if args is not None:
                    found.append((f"{name}:{start + offset}", args))
        for number, command in inline_commands(text):
            args = split_command(command)
            if args is not None:
                found.append((f"{name}:{number} (inline)", args))
    return found


# --- checking them ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's committed configuration (conf/ without a developer's conf/local) and
    Kedro's project settings."""
    from kedro.framework.startup import bootstrap_project

    bootstrap_project(ROOT)
    conf = tmp_path_factory.mktemp("docs") / "conf"
    shutil.copytree(ROOT / "conf", conf, ignore=shutil.ignore_patterns("local"))
    (conf / "local").mkdir()
    return conf


def _parse_kedro_run(args: list[str]) -> dict[str, Any]:
    """The options of the project's ``kedro run`` (parsed by its click command, not run)."""
    import click

    from brstnet.cli import run

    try:
        with redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
            context = run.make_context("kedro run", list(args))
    except click.ClickException as error:
        raise CommandError(f"kedro run: {error.format_message()}") from None
    return context.params


_registered: dict[str, set[str]] = {}


def check_kedro_run(args: list[str], conf: Path) -> None:
    """Raise CommandError unless ``kedro run <args>`` would start: options, pipelines,
    parameters, namespaces, runner and runner parameters."""
    import json

    from kedro.framework.project import settings
    from kedro.utils import load_obj

    from brstnet.parameter_check import ParameterError, validate_parameters
    from brstnet.pipeline_registry import register_pipelines
    from brstnet.runners.config import load_settings

    options = _parse_kedro_run(args)
    env, runtime = options.get("env"), options.get("params") or {}
    if env and not (conf / env).is_dir():
        raise CommandError(f"kedro run: no configuration environment {env!r} in conf/")
    loader = settings.CONFIG_LOADER_CLASS(
        conf_source=str(conf), env=env, runtime_params=runtime, **settings.CONFIG_LOADER_ARGS
    )
    parameters = dict(loader["parameters"])
    try:
        validate_parameters(parameters, runtime=runtime)
    except ParameterError as error:
        raise CommandError(f"kedro run: {error}") from None

    key = json.dumps(parameters, sort_keys=True, default=str)
    if key not in _registered:
        registry = register_pipelines(parameters)  # as a run with these parameters would
        nodes = {name: {n.name for n in pipe.nodes} for name, pipe in registry.items()}
        _registered[key] = nodes  # type: ignore[assignment]
    registered: dict[str, set[str]] = _registered[key]  # type: ignore[assignment]
    names = list(options.get("pipelines") or ["__default__"])
    unknown = [name for name in names if name not in registered]
    if unknown:
        valid = sorted(n for n in registered if not n.startswith("__"))
        raise CommandError(f"kedro run: unknown pipeline(s) {unknown}; registered: {valid}")

    selected = set().union(*(registered[name] for name in names))
    for namespace in options.get("namespaces") or ():
        if not any(node.startswith(f"{namespace}.") for node in selected):
            raise CommandError(f"kedro run: no node in namespace {namespace!r} of {names}")

    runner = options.get("runner")
    if runner:
        try:
            load_obj(runner, "kedro.runner")
        except (ImportError, AttributeError, ValueError) as error:
            raise CommandError(f"kedro run: --runner {runner}: {error}") from None
    runner_params = options.get("runner_params") or {}
    if runner_params:
        if not runner or not runner.endswith("DaskRunner"):
            raise CommandError("kedro run: --runner-params without the Dask runner")
        tree = (
            dict(loader["dask"])
            if "dask" in settings.CONFIG_LOADER_ARGS.get("config_patterns", {})
            else {}
        )
        try:
            load_settings(tree, overrides=runner_params)
        except ParameterError as error:
            raise CommandError(f"kedro run: {error}") from None


class _Parsed(Exception):
    pass


def check_brstnet(args: list[str]) -> None:
    """Raise CommandError unless ``brstnet <args>`` parses (through ``brstnet``'s own
    entry point; its argument parser returns and nothing runs)."""
    from brstnet.__main__ import main

    parse_args = argparse.ArgumentParser.parse_args

    def parse_only(self: argparse.ArgumentParser, *a: Any, **k: Any) -> Any:
        raise _Parsed(parse_args(self, *a, **k))

    out, err = io.StringIO(), io.StringIO()
    with (
        mock.patch.object(argparse.ArgumentParser, "parse_args", parse_only),
        mock.patch.object(sys, "argv", ["brstnet", *args]),
        redirect_stdout(out),
        redirect_stderr(err),
    ):
        try:
            code = main()
        except _Parsed:
            return
        except SystemExit as exit_:
            code = exit_.code
    if code not in (0, None) or (args and args[0] not in ("-h", "--help", "help")):
        raise CommandError(f"brstnet {' '.join(args)}: exit {code}: {err.getvalue().strip()}")


def check_command(args: list[str], conf: Path) -> None:
    if args[:2] == ["kedro", "run"]:
        check_kedro_run(args[2:], conf)
    else:
        check_brstnet(args[1:])


# --- the tests ----------------------------------------------------------------------------


def test_readme_is_short() -> None:
    lines = (ROOT / "README.md").read_text().count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move detail to docs/"


def test_mkdocs_build_is_strict_and_offline(tmp_path: Path) -> None:
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "DO_NOT_TRACK": "true"}
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stdout}{result.stderr}"
    pages = list(site.rglob("*.html"))
    assert (site / "index.html").is_file() and (site / "results" / "index.html").is_file()
    remote = [p for p in pages if "fonts.googleapis.com" in p.read_text()]
    assert not remote, f"pages ask for Google Fonts (set theme.font: false): {remote[:3]}"


def test_the_documentation_has_commands_to_check() -> None:
    commands = documented_commands()
    assert any(args[:2] == ["kedro", "run"] for _, args in commands)
    assert any(args[:2] == ["brstnet", "predict"] for _, args in commands)


def test_every_documented_command_runs(project: Path) -> None:
    problems = []
    for where, args in documented_commands():
        try:
            check_command(args, project)
        except CommandError as error:
            problems.append(f"{where}: {shlex.join(args)}\n    {error}")
    assert not problems, "documented commands that would not run:\n" + "\n".join(problems)


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("kedro run --pipelines=trainng", "unknown pipeline"),
        ("kedro run --pipelines=training,evaluaton", "unknown pipeline"),
        ('kedro run --params "model_training.epoch=3"', "did you mean epochs"),
        ('kedro run --params "model_traning.epochs=3"', "unknown parameter model_traning"),
        ("kedro run --env brstnett --pipelines=training", "no configuration environment"),
        ("kedro run --pipelinez=training", "No such option"),
        ("kedro run --runner=brstnet.runners.DaskRuner", "--runner"),
        (
            "kedro run --runner=brstnet.runners.DaskRunner --runner-params retrys=2",
            "did you mean retries",
        ),
        ("kedro run --pipelines=training --namespaces=resnet99_fold0", "namespace"),
        ("brstnet predict slide.tif --model m --out o --pixelsize 0.5", "unrecognized"),
        ("brstnet predict slide.tif --out o", "--model"),
        ("brstnet predcit slide.tif --model m --out o", "unknown command"),
        ("brstnet mlflow-link --uri x", "unrecognized"),
    ],
)
def test_a_misspelled_command_is_caught(line: str, says: str, project: Path) -> None:
    args = split_command(line)
    assert args is not None
    with pytest.raises(CommandError, match=re.escape(says)):
        check_command(args, project)


def test_correct_commands_pass(project: Path) -> None:
    for line in (
        'KEDRO_ENV=brstnet kedro run --pipelines=training --params "model_training.epochs=3"',
        ".venv/bin/brstnet run --pipelines=data_processing",
        "brstnet predict s.jpg --pixel-size 0.688 --model models:/<model id> --out p/ # note",
        "brstnet",
    ):
        args = split_command(line)
        assert args is not None, line
        check_command(args, project)


def test_commands_are_found_in_fenced_blocks_only() -> None:
    text = "\n".join(
        [
            "`kedro run --pipelines=nope` inline is prose",
            "```bash",
            "make run   # not checked",
            "kedro run --pipelines=training \\",
            '    --params "model_training.epochs=3"   # joined',
            "kedro viz run",
            "```",
            "  ```yaml",
            "  kedro run --pipelines=data_processing",
            "  ```",
        ]
    )
    found = [
        split_command(line) for _, block in fenced_blocks(text) for _, line in command_lines(block)
    ]
    assert [args for args in found if args] == [
        ["kedro", "run", "--pipelines=training", "--params", "model_training.epochs=3"],
        ["kedro", "run", "--pipelines=data_processing"],
    ]


# MLflow tag names, not Python objects: `brstnet.fold<k>_node`, `brstnet.owner`; and the
# entry-point groups other packages add layouts and metrics through
NOT_PYTHON = {"brstnet.fold", "brstnet.owner", LAYOUT_PLUGINS, METRIC_PLUGINS}


def resolves(dotted: str) -> bool:
    """Whether ``dotted`` is a module, or an attribute reached from the longest module."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        name = ".".join(parts[:cut])
        try:
            found: Any = importlib.import_module(name)
        except ModuleNotFoundError as error:
            if error.name and name.startswith(error.name):
                continue
            raise
        try:
            for attr in parts[cut:]:
                found = getattr(found, attr)
        except AttributeError:
            return False
        return True
    return False


def test_every_dotted_name_in_the_documentation_exists() -> None:
    names: dict[str, list[str]] = {}
    for path in DOC_FILES:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            for name in re.findall(r"\bbrstnet(?:\.[A-Za-z_][A-Za-z0-9_]*)+", line):
                if name not in NOT_PYTHON:
                    names.setdefault(name, []).append(f"{path.relative_to(ROOT)}:{number}")
    assert "brstnet.config.ProjectParams" in names
    missing = {name: where for name, where in names.items() if not resolves(name)}
    assert not missing, "the documentation names code that does not exist (moved?):\n" + (
        "\n".join(f"  {name}: {', '.join(where)}" for name, where in sorted(missing.items()))
    )


def test_a_name_that_moved_is_caught() -> None:
    assert resolves("brstnet.config.ProjectParams")
    assert not resolves("brstnet.config.ProjectParameters")
    assert not resolves("brstnet.nowhere.Thing")
