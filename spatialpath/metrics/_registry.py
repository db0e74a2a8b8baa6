"""The metric registry: every clinical TME metric is declared once, with its documentation.

A :class:`Metric` holds what an analyst needs to read a number (label, definition, formula, unit,
parameters with defaults, reference, level) and the function that computes it. ``docs/metrics.md``
is rendered from :data:`REGISTRY` (:func:`spatialpath.metrics.render_metrics_doc`), so the
documentation and the code cannot drift apart.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from spatialpath.model import DataModelError

__all__ = [
    "COLUMNS",
    "LEVELS",
    "REGISTRY",
    "STATUSES",
    "Metric",
    "Parameter",
    "canonical_parameters",
    "get_metric",
    "register",
]

Level = Literal["type", "type_pair", "image", "neighbourhood"]
#: what one row of a metric describes (the ``cell_type``/``cell_type_b`` columns it fills).
LEVELS: Mapping[str, str] = MappingProxyType(
    {
        "type": "one row per cell type (`cell_type`; `cell_type_b` empty)",
        "type_pair": "one row per ordered pair of cell types (`cell_type` → `cell_type_b`)",
        "image": "one row per image and compartment (`cell_type` empty, or the type named by a parameter)",
        "neighbourhood": "one row per cellular neighbourhood (its label in `cell_type`)",
    }
)
#: ``status`` of a row; every non-ok status has ``value`` NaN except ``ok``.
STATUSES: Mapping[str, str] = MappingProxyType(
    {
        "ok": "the value is defined; structural zeros (an absent type's count, density, proportion) are ok",
        "zero_denominator": "the value divides by zero (no cell in the compartment, no stromal cell...)",
        "below_min_cells": "fewer cells than the metric's minimum (`min_cells` parameters)",
        "compartment_absent": "the image has no region (or a region of zero area) for this compartment",
        "censored": "every focal cell is closer to the field edge than to its neighbour: unknowable",
    }
)
#: columns of the long table returned by :func:`spatialpath.metrics.compute`, in order.
COLUMNS: tuple[str, ...] = (
    "image_id",
    "compartment",
    "metric",
    "cell_type",
    "cell_type_b",
    "value",
    "unit",
    "n_cells_a",
    "n_cells_b",
    "area_mm2",
    "status",
    "parameters",
)


@dataclass(frozen=True)
class Parameter:
    """A metric parameter: name, default, meaning, and a check returning an error text or None.

    ``cell_type=True`` marks a parameter naming a cell type: :func:`~spatialpath.metrics.compute`
    checks it against the categories before computing anything.

    Examples
    --------
    >>> from spatialpath.metrics import REGISTRY
    >>> from spatialpath.metrics._registry import positive
    >>> p = Parameter("radius_um", 20.0, "the radius r (µm)", check=positive)
    >>> p.check(-1.0), p.check(5.0)
    ('a finite number > 0', None)
    >>> REGISTRY["mixing_score"].parameters[0].name, REGISTRY["mixing_score"].parameters[0].default
    ('radius_um', 20.0)
    """

    name: str
    default: Any
    doc: str
    check: Callable[[Any], str | None] | None = None
    cell_type: bool = False


@dataclass(frozen=True)
class Metric:
    """One registered metric.

    Attributes
    ----------
    name
        Identifier in the ``metric`` column and in ``compute(metrics=[...])``.
    label
        Short human title.
    definition, formula
        What it measures (plain words) and how (Unicode formula).
    unit
        Unit of ``value`` (``"cells/mm2"``, ``"um"``, ``"1"``...).
    level
        One of :data:`LEVELS`.
    parameters
        Parameters with defaults (a tuple of :class:`Parameter`).
    reference
        Literature or convention it follows.
    func
        ``func(image, compartment, **params) -> list[dict]`` computing the rows of one image and
        compartment (see :class:`spatialpath.metrics.ImageData`).
    scope
        ``"compartment"``: computed in every compartment; ``"image"``: computed once per image
        across compartments (reported with compartment ``"tissue"``).
    default
        Whether ``compute(metrics=None)`` includes it (metrics needing a named cell type, CN
        labels, or much time are opt-in).
    value_labels
        For a categorical call: what each integer ``value`` means.

    Examples
    --------
    >>> from spatialpath.metrics import REGISTRY
    >>> from spatialpath.metrics._registry import positive
    >>> m = Metric(name="n_near", label="Cells near", definition="Cells within r.", formula="n(r)",
    ...            unit="cells", level="image", reference="Convention.",
    ...            parameters=(Parameter("radius_um", 20.0, "r (µm)", check=positive),),
    ...            func=lambda image, compartment, radius_um: [])
    >>> m.defaults, m.resolve({"radius_um": 5})
    ({'radius_um': 20.0}, {'radius_um': 5})
    >>> m.resolve({"radius_um": -1})
    Traceback (most recent call last):
    ...
    spatialpath.model._validate.DataModelError: params['n_near']['radius_um'] = -1:
    expected a finite number > 0
    >>> REGISTRY["density"].unit, REGISTRY["density"].level
    ('cells/mm2', 'type')
    """

    name: str
    label: str
    definition: str
    formula: str
    unit: str
    level: Level
    parameters: tuple[Parameter, ...]
    reference: str
    func: Callable[..., list[dict[str, Any]]] = field(repr=False, compare=False)
    scope: Literal["compartment", "image"] = "compartment"
    default: bool = True
    value_labels: Mapping[int, str] | None = None

    @property
    def defaults(self) -> dict[str, Any]:
        """Parameter defaults as a dict."""
        return {p.name: p.default for p in self.parameters}

    def resolve(self, params: Mapping[str, Any] | None) -> dict[str, Any]:
        """Defaults updated with ``params``, validated.

        Raises
        ------
        DataModelError
            On an unknown parameter name or a value its check refuses.
        """
        params = dict(params or {})
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            raise DataModelError(
                f"params[{self.name!r}] has unknown parameter(s) {unknown}; expected some of "
                f"{sorted(self.defaults)}"
            )
        out = {**self.defaults, **params}
        for p in self.parameters:
            problem = p.check(out[p.name]) if p.check is not None else None
            if problem:
                raise DataModelError(
                    f"params[{self.name!r}][{p.name!r}] = {out[p.name]!r}: expected {problem}"
                )
        return out


_REGISTRY: dict[str, Metric] = {}
#: every registered metric by name (read-only view, in registration order).
REGISTRY: Mapping[str, Metric] = MappingProxyType(_REGISTRY)


def register(**fields: Any) -> Callable[[Callable[..., list[dict[str, Any]]]], Callable[..., Any]]:
    """Decorator registering a metric function under ``fields["name"]`` (each name once).

    Examples
    --------
    >>> from spatialpath.metrics import REGISTRY
    >>> REGISTRY["density"].unit
    'cells/mm2'
    """

    def decorate(func: Callable[..., list[dict[str, Any]]]) -> Callable[..., Any]:
        metric = Metric(func=func, **fields)
        if metric.name in _REGISTRY:
            raise ValueError(f"metric {metric.name!r} is registered twice")
        if metric.level not in LEVELS:
            raise ValueError(f"metric {metric.name!r}: level must be one of {list(LEVELS)}")
        _REGISTRY[metric.name] = metric
        return func

    return decorate


def get_metric(name: str) -> Metric:
    """The registered metric called ``name``.

    Parameters
    ----------
    name
        A key of :data:`REGISTRY`.

    Raises
    ------
    DataModelError
        If no metric has that name (the message lists them).

    Examples
    --------
    >>> from spatialpath.metrics import get_metric  # importing the package registers the metrics
    >>> get_metric("mixing_score").level
    'type_pair'
    """
    if name not in _REGISTRY:
        raise DataModelError(f"unknown metric {name!r}; registered metrics: {sorted(_REGISTRY)}")
    return _REGISTRY[name]


def _plain(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str):  # numpy scalars
        return value.item()
    return value


def canonical_parameters(params: Mapping[str, Any]) -> str:
    """Canonical JSON of a parameter dict: sorted keys, no spaces, numpy scalars as Python numbers.

    Parameters
    ----------
    params
        Parameter names and values.

    Examples
    --------
    >>> canonical_parameters({"radius_um": 20, "min_cells": 10})
    '{"min_cells":10,"radius_um":20}'
    """
    return json.dumps({k: _plain(v) for k, v in params.items()}, sort_keys=True, separators=(",", ":"))


# --- parameter checks (return what was expected, or None) ---------------------------------------


def positive(value: Any) -> str | None:
    """Refuse anything but a finite number > 0."""
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    return None if ok and value > 0 else "a finite number > 0"


def optional_positive(value: Any) -> str | None:
    """``None`` or a finite number > 0."""
    return None if value is None else positive(value)


def non_negative(value: Any) -> str | None:
    """A finite number >= 0."""
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    return None if ok and value >= 0 else "a finite number >= 0"


def count(value: Any) -> str | None:
    """An integer >= 1."""
    ok = isinstance(value, int) and not isinstance(value, bool)
    return None if ok and value >= 1 else "an integer >= 1"


def probability(value: Any) -> str | None:
    """A number in [0, 1]."""
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    return None if ok and 0 <= value <= 1 else "a number in [0, 1]"


def text(value: Any) -> str | None:
    """A non-empty string."""
    return None if isinstance(value, str) and value else "a non-empty string"


def one_of(*choices: Any) -> Callable[[Any], str | None]:
    """A check accepting only ``choices``."""

    def check(value: Any) -> str | None:
        return None if value in choices else f"one of {list(choices)}"

    return check
