"""Shared pieces of the pipeline's config models: the section base class and its helpers.

Every section of the YAML file derives from :class:`_Section` (unknown keys refused, cross-key
rules in :meth:`_Section.problems`); ``DEFER`` in the validation context collects those problems
instead of raising, so that :func:`spatialpath.pipeline.load_config` reports all at once.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationInfo, model_validator

__all__ = ["DEFER", "Loc", "suggest"]

#: context flag of :meth:`PipelineConfig.model_validate`: collect ``problems()`` instead of raising.
DEFER = "spatialpath_defer_checks"

Loc = tuple[str | int, ...]


def suggest(word: str, choices: list[str] | tuple[str, ...]) -> str:
    """``"; did you mean 'x'?"`` for the closest of ``choices``, else ``""``.

    Examples
    --------
    >>> suggest("grpah", ["graph", "metrics"])
    "; did you mean 'graph'?"
    """
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _resolve(value: Path | None, info: ValidationInfo) -> Path | None:
    """A path relative to the YAML file's folder (``context["base"]``), else the current folder."""
    if value is None:
        return None
    base = Path((info.context or {}).get("base", "."))
    return Path(os.path.abspath(base / Path(value).expanduser()))


def _explicit(model: BaseModel, fields: tuple[str, ...], owner: str, value: str) -> list[tuple[Loc, str]]:
    """Problems for keys of ``fields`` set (not to their default) while ``owner`` is ``value``."""
    return [
        ((f,), f"{f} is not used with {owner}: {value}; remove it")
        for f in fields
        if f in model.model_fields_set and getattr(model, f) != type(model).model_fields[f].default
    ]


class _Section(BaseModel):
    """A config section: unknown keys refused; cross-key rules in :meth:`problems`."""

    model_config = ConfigDict(extra="forbid")

    def problems(self) -> list[tuple[Loc, str]]:
        """Rules tying keys together: ``(key path within the section, message)`` pairs."""
        return []

    @model_validator(mode="after")
    def _check(self, info: ValidationInfo) -> Any:
        if not (info.context or {}).get(DEFER):
            found = self.problems()
            if found:
                raise ValueError("; ".join(f"{'.'.join(map(str, loc))}: {msg}" for loc, msg in found))
        return self
