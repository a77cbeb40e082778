"""Validate the whole parameter tree before a run: each bad key named with its file.

:func:`validate_parameters` checks the run's merged parameters against
:class:`brstnet.config.ProjectParams` (unknown keys are errors, so a typo such as
``model_training.epoch`` stops the run at once) and says which parameter file, or
``--params``, set the offending key, with the closest valid key names.
:func:`validate_settings` does the same for any other typed settings file (the Dask
runner's ``dask.yml``). :func:`parameter_files` lists the files Kedro merged, which
these messages name.
"""

from __future__ import annotations

import difflib
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from .config import ProjectParams

M = TypeVar("M", bound=BaseModel)


class ParameterError(ValueError):
    """A parameter that does not fit :class:`ProjectParams` (the message names it and its file)."""


def _defined_in(dotted: tuple[str | int, ...], files: list[Path]) -> list[str]:
    """The parameter files (in load order) that set the key at ``dotted``."""
    found = []
    for path in files:
        try:
            node: Any = yaml.safe_load(Path(path).read_text())
        except (OSError, yaml.YAMLError):
            continue
        for part in dotted:
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, list) and isinstance(part, int) and part < len(node):
                node = node[part]
            else:
                break
        else:
            found.append(shown(Path(path)))
    return found


def shown(path: Path) -> str:
    """``path`` relative to the working directory (the project root) when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def parameter_files(config_loader: Any, env: str | None, kind: str = "parameters") -> list[Path]:
    """The ``kind`` files (``parameters``, ``dask``) Kedro merges for ``env``, base first
    (for error messages)."""
    root = Path(config_loader.conf_source)
    envs = [config_loader.base_env, env or config_loader.default_run_env]
    files: list[Path] = []
    for name in dict.fromkeys(e for e in envs if e):
        folder = root / name
        if folder.is_dir():
            files += sorted(
                p
                for p in folder.rglob("*")
                if p.suffix in (".yml", ".yaml") and kind in str(p.relative_to(folder))
            )
    return files


def validate_parameters(
    params: dict[str, Any], files: list[Path] | None = None, *, runtime: dict | None = None
) -> ProjectParams:
    """Validate the whole parameter tree; each problem names its key and where it is set.

    Args:
        params: The merged parameters of the run (Kedro's ``parameters`` config).
        files: The parameter files that were merged, to name where a bad key is set.
        runtime: ``--params`` given on the command line.

    Raises:
        ParameterError: every invalid or unknown key, with its file and, for a typo, the
        valid keys closest to it.
    """
    return validate_settings(ProjectParams, params, files, runtime=runtime)


def validate_settings(
    model: type[M],
    tree: dict[str, Any],
    files: list[Path] | None = None,
    *,
    runtime: dict | None = None,
    runtime_flag: str = "--params",
    what: str = "parameter",
) -> M:
    """Validate ``tree`` against the pydantic ``model``; each problem names its key, the
    file(s) that set it (or ``runtime_flag``) and, for a typo, the closest valid keys.

    Raises:
        ParameterError: every invalid or unknown key.
    """
    try:
        return model.model_validate(tree)
    except ValidationError as err:
        lines = []
        for problem in err.errors():
            loc = tuple(problem["loc"])
            key = ".".join(str(p) for p in loc)
            where = _defined_in(loc, list(files or []))
            if runtime and _has_key(runtime, loc):
                where.append(runtime_flag)
            place = f" (set in {', '.join(where)})" if where else ""
            if problem["type"] == "extra_forbidden":
                hint = ""
                holder = _model_at(loc[:-1], model)
                if holder is not None:
                    close = difflib.get_close_matches(str(loc[-1]), list(holder.model_fields), n=2)
                    hint = f"; did you mean {' or '.join(close)}?" if close else ""
                    hint += f" (valid keys: {', '.join(holder.model_fields)})"
                lines.append(f"unknown {what} {key}{place}{hint}")
            else:
                label = f"{what} {key}" if key else f"{what}s"  # a whole-model check
                lines.append(f"{label}{place}: {problem['msg']}")
        raise ParameterError(f"invalid {what}s:\n  " + "\n  ".join(lines)) from None


def _has_key(tree: dict, loc: tuple) -> bool:
    """Whether ``loc`` is set in ``tree``, nested or as a dotted key ("a.b.c")."""
    node: Any = tree
    for part in loc:
        if not isinstance(node, dict) or part not in node:
            break
        node = node[part]
    else:
        return True
    flat = ".".join(str(p) for p in loc)
    return any(flat == k or flat.startswith(f"{k}.") for k in map(str, tree))


def _model_at(loc: tuple, root: type[BaseModel] = ProjectParams) -> type[BaseModel] | None:
    """The pydantic model that holds the keys at ``loc`` (None past a list or a dict)."""
    model: Any = root
    for part in loc:
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return None
        field = model.model_fields.get(str(part))
        if field is None:
            return None
        annotation = field.annotation
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        model = args[0] if args and typing.get_origin(annotation) is not None else annotation
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None
