"""The session's side of the Dask runner: read ``dask.yml`` with the run's environment.

Kedro builds the runner before the session exists, so the runner cannot read the
configuration itself. :class:`DaskConfigHook` reads it when the session's context is
created (``--env`` / ``KEDRO_ENV`` included) and keeps it; the runner finds the hook in
the hook manager Kedro hands to ``run()``. Nothing is validated here: a run with another
runner never fails on ``dask.yml``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kedro.config import MissingConfigException
from kedro.framework.hooks import hook_impl

from brstnet.parameter_check import parameter_files, shown
from brstnet.pipelines.run_parameters import CONFIG_LOADER_ARGS

#: The ``dask`` config files' patterns (the project's config loader has them too).
PATTERNS = CONFIG_LOADER_ARGS["config_patterns"]["dask"]


@dataclass(frozen=True)
class SessionDaskConfig:
    """The merged ``dask`` configuration of one session and the files it came from."""

    tree: dict[str, Any]
    files: list[Path] = field(default_factory=list)
    project_path: Path = Path(".")

    def shown_files(self) -> list[str]:
        return [shown(f) for f in self.files]


class DaskConfigHook:
    """Keeps the session's ``dask`` configuration for :class:`~brstnet.runners.DaskRunner`."""

    def __init__(self) -> None:
        self.session: SessionDaskConfig | None = None

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        loader = context.config_loader
        if "dask" not in loader.config_patterns:
            loader.config_patterns.update({"dask": PATTERNS})
        try:
            tree = dict(loader["dask"])
        except MissingConfigException:
            tree = {}
        self.session = SessionDaskConfig(
            tree, parameter_files(loader, context.env, kind="dask"), Path(context.project_path)
        )
