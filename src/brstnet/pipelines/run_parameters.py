"""The parameters pipelines are registered from: the session's, else KEDRO_ENV's.

Kedro registers pipelines before any node runs, so the registry reads the configuration
itself (Kedro's "dynamic pipelines" pattern). Kedro calls ``register_pipelines()``
without arguments, so the session's configuration reaches it through an explicit object:
:class:`RunParameters`, owned by :class:`brstnet.hooks.ProjectHooks`. The hook fills it
when a session's context is created (``--env`` and ``--params`` included) and empties it
when that session's run ends; the registry finds it among the hooks Kedro was configured
with (``kedro.framework.project.settings.HOOKS``, :func:`project_run_parameters`).
Outside a session (``import`` in a notebook, ``kedro registry list``) the registry reads
the environment named by KEDRO_ENV (default: local over base) with Kedro's config loader
and the project's loader arguments (:data:`CONFIG_LOADER_ARGS`). It never reads data
files, so a run whose first node downloads the data registers before the data exist.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from kedro.framework.project import settings
from kedro.utils import find_kedro_project

#: The project's config loader arguments (``settings.CONFIG_LOADER_ARGS``).
CONFIG_LOADER_ARGS: dict[str, Any] = {
    "base_env": "base",
    "default_run_env": "local",
    # an environment (e.g. conf/brstnet) overrides single keys, not whole blocks
    "merge_strategy": {"parameters": "soft", "dask": "soft"},
    # the Dask runner's settings: conf/<env>/dask.yml (brstnet.runners)
    "config_patterns": {"dask": ["dask*", "dask*/**"]},
}


def _key(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True, default=str)


class RunParameters:
    """The parameters of the session being run, and those the registered pipelines were
    built from.

    Attributes:
        session: The session's merged parameters (None outside a session).
    """

    def __init__(self) -> None:
        self.session: dict[str, Any] | None = None
        self._registered_for: str | None = None

    def use(self, params: dict[str, Any] | None) -> bool:
        """Register pipelines from ``params`` from now on (None: from KEDRO_ENV's
        configuration again); True when ``params`` differ from those Kedro's registered
        pipelines were built from (the caller then reloads the registry)."""
        self.session = params
        registered = self._registered_for
        return params is not None and registered is not None and registered != _key(params)

    def current(self) -> dict[str, Any]:
        """The parameters pipelines are registered from (the session's, else KEDRO_ENV's)."""
        return self.session if self.session is not None else configured_parameters()

    def for_registry(self) -> dict[str, Any]:
        """:meth:`current`, remembered as those the registered pipelines come from."""
        params = self.current()
        self._registered_for = _key(params)
        return params


def project_run_parameters() -> RunParameters | None:
    """The :class:`RunParameters` of the hooks Kedro is configured with (None before
    ``bootstrap_project`` / ``configure_project``, or with hooks that hold none)."""
    for hook in settings.HOOKS:
        held = getattr(hook, "run_parameters", None)
        if isinstance(held, RunParameters):
            return held
    return None


def registry_parameters() -> dict[str, Any]:
    """The parameters :func:`brstnet.pipeline_registry.register_pipelines` builds from
    (:func:`current_parameters`), remembered by the hooks' :class:`RunParameters`."""
    held = project_run_parameters()
    return held.for_registry() if held is not None else configured_parameters()


def current_parameters() -> dict[str, Any]:
    """The parameters pipelines are registered from (the session's, else KEDRO_ENV's)."""
    held = project_run_parameters()
    return held.current() if held is not None else configured_parameters()


def configured_parameters() -> dict[str, Any]:
    """The parameters of the environment KEDRO_ENV names (default: local over base), read
    from the project's ``conf`` (found from the working directory, also in notebooks/)."""
    root = find_kedro_project(Path.cwd()) or Path.cwd()
    loader = settings.CONFIG_LOADER_CLASS(
        str(root / settings.CONF_SOURCE),
        **{**CONFIG_LOADER_ARGS, "env": os.environ.get("KEDRO_ENV")},
    )
    return loader["parameters"]
