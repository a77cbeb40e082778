"""The project's ``kedro run`` (Kedro loads ``<package>.cli``): Kedro's own ``run``
command, whose errors of this project end in one block instead of Kedro's tracebacks.

An error this project raises for something a user can fix (bad data, parameters, a
missing or damaged download, a Dask or SLURM cluster that cannot run the pipeline)
already says what is wrong, where and what to do; under ``kedro run`` it used to reach the
user below 175-400 lines of chained tracebacks. Now::

    kedro run: error in node 'filter_spots': section A1: no spot has 1000 or more reads ...
    (the full traceback: logs/last_error.log; BRSTNET_TRACEBACK=1 prints it here)

and exit code 1. Any other exception (a bug) keeps Kedro's traceback. Options, defaults
and behaviour are otherwise Kedro's ``run`` (``brstnet run`` is the same command).
"""

from __future__ import annotations

import functools
import os
import re
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from kedro.framework.cli.project import run as kedro_run

from .parameter_check import ParameterError
from .runners.errors import ClusterError, DaskRunnerError
from .st.errors import AcquisitionError, DataError

#: Where the last project error's full traceback is written (relative to the project).
ERROR_LOG = Path("logs/last_error.log")
#: Set to 1 to print the traceback with the block.
TRACEBACK_ENV = "BRSTNET_TRACEBACK"


def user_errors() -> tuple[type[BaseException], ...]:
    """The exception types that describe a user's fixable mistake."""
    return (DataError, AcquisitionError, ParameterError, ClusterError, DaskRunnerError)


def error_block(error: BaseException) -> str:
    """``kedro run: error in node 'x': message`` (the node from the error's notes, which
    the project's hook and the Dask runner add)."""
    nodes = [
        found.group(1)
        for note in getattr(error, "__notes__", [])
        if (found := re.match(r"in Kedro node '([^']+)'", note))
    ]
    message = " ".join(str(error).split())  # one line: messages may wrap
    return f"kedro run: error{f' in node {nodes[0]!r}' if nodes else ''}: {message}"


def _one_block(callback: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(callback)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return callback(*args, **kwargs)
        except user_errors() as error:
            text = "".join(traceback.format_exception(error))
            try:
                ERROR_LOG.parent.mkdir(parents=True, exist_ok=True)
                ERROR_LOG.write_text(text)
                saved = f"the full traceback: {ERROR_LOG}"
            except OSError:
                saved = "the traceback could not be written to the log"
            if os.environ.get(TRACEBACK_ENV) == "1":
                sys.stderr.write(text)
            sys.stderr.write(f"{error_block(error)}\n({saved}; {TRACEBACK_ENV}=1 prints it here)\n")
            raise SystemExit(1) from None

    return run


run = click.Command(
    name="run",
    params=list(kedro_run.params),
    callback=_one_block(kedro_run.callback),
    help=kedro_run.help,
    short_help=kedro_run.short_help,
)


@click.group(name="brstnet")
def cli() -> None:
    """The project's commands (Kedro's, with ``run`` ending user errors in one block)."""


cli.add_command(run)
