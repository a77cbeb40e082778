"""``brstnet``: the project's commands. A bare ``brstnet`` prints this help; nothing runs
unless asked.

    brstnet predict SLIDE --model M --out DIR   expression maps for one H&E slide
    brstnet run [kedro run options]             the Kedro pipelines (as `kedro run`)
    brstnet mlflow-link [--url URL]             the MLflow runs table that compares variants
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

USAGE = """usage: brstnet <command> [options]

Predict spatial gene expression from H&E images (BrST-Net reproduction).

commands:
  predict       expression maps for one H&E slide from a trained model
                (a folder under data/06_models, runs:/..., or models:/...)
  run           run the Kedro pipelines, as `kedro run` (e.g. brstnet run --pipelines=training)
  mlflow-link   print the MLflow UI link to the runs table that compares the variants

`brstnet <command> --help` describes a command's options.
"""


def main(*args: Any, **kwargs: Any) -> Any:
    argv = sys.argv[1:]
    if args or kwargs:  # Kedro's programmatic use: main(["--pipelines", ...]) runs the project
        return _kedro_run(*args, **kwargs)
    if not argv or argv[0] in ("-h", "--help", "help"):
        sys.stdout.write(USAGE)
        return 0
    command, rest = argv[0], argv[1:]
    if command == "predict":
        return command_module().predict_command(rest)
    if command == "run":
        return _kedro_run(rest)
    if command == "mlflow-link":
        return command_module().mlflow_link_command(rest)
    sys.stderr.write(f"brstnet: unknown command {command!r}\n\n{USAGE}")
    return 2


def command_module() -> Any:
    """:mod:`brstnet.command`, imported when a command runs (a bare ``brstnet`` prints its
    help without loading the commands' dependencies)."""
    return importlib.import_module("brstnet.command")


def _kedro_run(*args: Any, **kwargs: Any) -> Any:
    """``kedro run`` of the project in the working directory."""
    # deferred: importing Kedro configures logging (and prints where from), which a bare
    # ``brstnet`` or ``brstnet predict`` must not do
    from kedro.framework.cli.utils import find_run_command
    from kedro.framework.project import configure_project

    package_name = Path(__file__).parent.name
    configure_project(package_name)
    kwargs["standalone_mode"] = not hasattr(sys, "ps1")
    kwargs.setdefault("prog_name", "brstnet run")
    return find_run_command(package_name)(*args, **kwargs)


if __name__ == "__main__":
    sys.exit(main())
