"""Request bodies of the HTTP API: pydantic models at the edge, so OpenAPI describes them.

Each is read into the typed command of its route and nothing else; the command decides what
is valid (``msgspec.convert`` checks its constraints).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RunBody(_Body):
    """``POST /runs``: start a run of ``workflow`` in the background."""

    workflow: str = Field(description="Name of the workflow to run.")
    params: dict[str, Any] = Field(
        default_factory=dict, description="Run parameters, checked against the params models."
    )
    selection: str | None = Field(None, description="Stages to run (a --select expression).")
    fail_fast: bool = Field(False, description="Stop scheduling new stages at the first failure.")
    environment: str | None = Field(
        None, description="Run the version deployed in dev, qa, uat or prod (none: the files)."
    )
