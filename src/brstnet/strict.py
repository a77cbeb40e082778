"""The base of every typed parameter block: unknown keys are errors and values are frozen."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    """A parameter block: ``extra="forbid"`` (a typo names its key), immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)
