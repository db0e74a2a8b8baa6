from __future__ import annotations

from pathlib import Path

import pytest

import spatialpath.metrics as spm
from spatialpath.metrics import REGISTRY, get_metric, render_metrics_doc
from spatialpath.metrics.__main__ import main
from spatialpath.metrics._registry import register
from spatialpath.model import DataModelError

DOC = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"


def test_every_metric_has_all_fields():
    assert len(REGISTRY) >= 15
    for name, m in REGISTRY.items():
        assert m.name == name
        for field in ("label", "definition", "formula", "unit", "reference"):
            assert isinstance(getattr(m, field), str), (name, field)
            assert getattr(m, field).strip(), (name, field)
        assert m.level in spm.LEVELS
        assert m.scope in ("compartment", "image")
        for p in m.parameters:
            assert p.name, name
            assert p.doc, (name, p.name)
            assert p.check is None or p.check(p.default) is None, (name, p.name)  # defaults pass their check
        assert callable(m.func)
        assert m.resolve(None) == m.defaults


def test_every_metric_is_exported_as_a_function():
    funcs = {getattr(spm, n) for n in spm.__all__ if callable(getattr(spm, n))}
    assert all(m.func in funcs for m in REGISTRY.values())


def test_docs_file_equals_the_rendered_registry():
    assert DOC.read_text(encoding="utf-8") == render_metrics_doc(), (
        "docs/metrics.md is stale: regenerate with .venv/bin/python -m spatialpath.metrics docs/metrics.md"
    )
    text = render_metrics_doc()
    for m in REGISTRY.values():
        assert f"### `{m.name}`" in text
        assert m.formula.replace("|", "\\|") in text


def test_main_writes_and_prints(tmp_path, capsys):
    out = tmp_path / "metrics.md"
    assert main([str(out)]) == 0
    assert out.read_text(encoding="utf-8") == render_metrics_doc()
    assert main([]) == 0
    assert capsys.readouterr().out == render_metrics_doc()


def test_get_metric_unknown_name():
    with pytest.raises(DataModelError, match=r"unknown metric 'densty'; registered metrics: \[.*'density'"):
        get_metric("densty")


def test_register_twice_is_refused():
    fields = {k: getattr(REGISTRY["count"], k) for k in ("name", "label", "definition", "formula", "unit")}
    with pytest.raises(ValueError, match="registered twice"):
        register(**fields, level="type", parameters=(), reference="x")(lambda image, c: [])


def test_register_bad_level_is_refused():
    with pytest.raises(ValueError, match="level must be one of"):
        register(name="_tmp_bad_level", label="x", definition="x", formula="x", unit="1", level="cell",
                 parameters=(), reference="x")(lambda image, c: [])  # fmt: skip
    assert "_tmp_bad_level" not in REGISTRY


def test_resolve_refuses_unknown_and_bad_values():
    m = get_metric("mixing_score")
    with pytest.raises(
        DataModelError, match=r"params\['mixing_score'\] has unknown parameter\(s\) \['radius'\]"
    ):
        m.resolve({"radius": 10})
    with pytest.raises(DataModelError, match=r"\['radius_um'\] = -1: expected a finite number > 0"):
        m.resolve({"radius_um": -1})
    with pytest.raises(DataModelError, match=r"\['min_cells'\] = 0: expected an integer >= 1"):
        m.resolve({"min_cells": 0})
    with pytest.raises(DataModelError, match=r"\['q'\] = 1.5: expected a number in \[0, 1\]"):
        get_metric("nn_distance_quantile").resolve({"q": 1.5})
    with pytest.raises(DataModelError, match=r"expected one of \['cdf', 'none'\]"):
        get_metric("clark_evans").resolve({"correction": "border"})
    with pytest.raises(DataModelError, match="expected True or False"):
        get_metric("nn_distance_mean").resolve({"exclude_censored": "yes"})
    with pytest.raises(DataModelError, match="expected a non-empty string"):
        get_metric("density_ratio").resolve({"numerator": ""})
    with pytest.raises(DataModelError, match="expected a finite number >= 0"):
        get_metric("immune_phenotype").resolve({"desert_density": -5})


def test_canonical_parameters_is_sorted_compact_json():
    import numpy as np

    assert spm.canonical_parameters({"b": np.float64(2.5), "a": (1, 2)}) == '{"a":[1,2],"b":2.5}'
