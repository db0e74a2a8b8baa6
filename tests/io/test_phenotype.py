"""phenotype() against scimap's stored labels and hand-checked gating trees."""

from __future__ import annotations

import re
import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from spatialpath.io import phenotype, rescale_to_gates
from spatialpath.io._phenotype import UNKNOWN

# ---------------------------------------------------------------- real data: scimap's own labels


@pytest.fixture(scope="module")
def scimap_example(shared):
    """3,029 cells x 33 markers, rescaled by scimap (gate = 0.5), with scimap's `phenotype` labels."""
    with warnings.catch_warnings():  # written by an old anndata: OldFormatWarning on every element
        warnings.simplefilter("ignore", category=Warning)
        return ad.read_h5ad(shared("scimap_exemplar001", "_data", "example_data.h5ad"))


@pytest.mark.realdata
def test_reproduces_scimap_phenotypes(shared, scimap_example):
    a = scimap_example.copy()
    stored = a.obs["phenotype"].astype(str)
    phenotype(a, None, shared("scimap_exemplar001", "_data", "phenotype_workflow.csv"), key_added="ours")
    ours = a.obs["ours"].astype(str)
    agreement = float((ours == stored).mean())
    disagreements = pd.crosstab(stored[ours != stored], ours[ours != stored])
    assert agreement >= 0.999, disagreements  # measured: 1.0 (3,029 / 3,029)
    assert a.obs["ours"].dtype == "category"
    assert set(ours) == set(stored)  # all 25 phenotypes, none invented


@pytest.mark.realdata
def test_workflow_as_dataframe_equals_workflow_as_path(shared, scimap_example):
    path = shared("scimap_exemplar001", "_data", "phenotype_workflow.csv")
    from_path = phenotype(scimap_example, None, path, inplace=False)
    from_frame = phenotype(scimap_example, None, pd.read_csv(path), inplace=False)
    pd.testing.assert_series_equal(from_path, from_frame)


@pytest.fixture(scope="module")
def exemplar001(shared):
    """MCMICRO exemplar-001: 11,201 raw cell means, scimap's log-scale manual gates and workflow."""
    folder = shared("scimap_exemplar001", "scimapExampleData")
    table = pd.read_csv(folder / "exemplar-001--unmicst_cell.csv")
    gates = pd.read_csv(folder / "manual_gates.csv")
    markers = gates.iloc[:, 0].tolist()
    cells = ad.AnnData(table[markers].to_numpy(np.float32), var=pd.DataFrame(index=markers))
    cells.obs_names = table["CellID"].astype(str).to_numpy()
    return cells, gates, folder / "phenotype_workflow.csv"


@pytest.mark.realdata
def test_manual_gates_on_raw_exemplar001(exemplar001):
    cells, gates, workflow = exemplar001
    labels = phenotype(cells, gates, workflow, log=True, inplace=False).astype(str)
    logx = pd.DataFrame(np.log1p(cells.X.astype(np.float64)), columns=cells.var_names, index=cells.obs_names)
    gate = gates.set_index(gates.columns[0]).iloc[:, 0]
    # positive = at or above the data value closest to the gate (scimap's rescale)
    closest = {m: logx[m].to_numpy()[np.argmin(np.abs(logx[m].to_numpy() - gate[m]))] for m in gate.index}
    positive = pd.DataFrame({m: logx[m] >= closest[m] for m in gate.index})
    top = {"ECAD+": "ECAD", "Immune": "CD45", "SMA+": "SMA"}  # the first level: one 'pos' marker each
    immune_children = {"NK cells", "Other myeloid cells", "Treg", "Dendritic cells"}
    for name, marker in top.items():
        assert positive.loc[labels == name, marker].all(), name
    assert positive.loc[labels.isin(immune_children), "CD45"].all()
    assert not positive.loc[labels == UNKNOWN, list(top.values())].any(axis=None)
    # the same labels from values rescaled here (an independent piecewise-linear rescale)
    expected = positive.copy().astype(float)
    for m in gate.index:
        v, c = logx[m].to_numpy(), closest[m]
        expected[m] = np.where(
            v >= c, 0.5 + 0.5 * (v - c) / (v.max() - c), 0.5 * (v - v.min()) / (c - v.min())
        )
    rescaled = ad.AnnData(expected.to_numpy(), var=pd.DataFrame(index=gate.index))
    rescaled.obs_names = cells.obs_names
    np.testing.assert_array_equal(phenotype(rescaled, None, workflow, inplace=False).astype(str), labels)
    assert labels.value_counts()["Immune"] > 1000  # a populated tree, not all Unknown


@pytest.mark.realdata
def test_log_scale_gates_on_raw_values_are_refused_unless_log_is_explicit(exemplar001):
    """scimap's rescale defaults to log=True: its gates (6.4-8.9) on raw means call ~everyone positive."""
    cells, gates, workflow = exemplar001
    raw = cells.X.astype(np.float64)
    gate = gates.set_index(gates.columns[0]).iloc[:, 0]
    assert (gate.to_numpy() < np.log1p(raw.max(axis=0))).all()
    assert raw.max() > 100
    # the share of cells at or above the raw value closest to each gate (what log=False gates on)
    share = {}
    for j, m in enumerate(cells.var_names):
        v = raw[:, j]
        share[m] = (v >= v[np.argmin(np.abs(v - gate[m]))]).mean()
    assert min(share.values()) > 0.99  # ELANE 100 %, CD11B 99.3 %...
    wf = pd.read_csv(workflow)
    used = [m for m in wf.columns[2:] if wf[m].notna().any()]  # the message follows the workflow
    expected = ", ".join(f"{m} {100 * share[m]:.1f} %" for m in used[:6]) + " and 1 more marker"
    assert len(used) == 7
    with pytest.raises(ValueError, match=re.escape(expected) + r"; pass log=True"):
        phenotype(cells, gates, workflow, inplace=False)  # was: silently 6,920 ECAD+ and no Unknown
    with pytest.warns(UserWarning, match=r"gates of \['CD45', 'CD57'\] lie outside"):  # below their minima
        explicit = phenotype(cells, gates, workflow, log=False, inplace=False)  # the user's choice, kept
    assert explicit.value_counts()["ECAD+"] == 6920
    assert UNKNOWN not in set(explicit)
    logged = phenotype(cells, gates, workflow, log=True, inplace=False)
    assert logged.value_counts()[UNKNOWN] == 2278  # 20 % of cells negative for ECAD, CD45 and SMA


def test_gates_on_the_raw_scale_need_no_log():
    tree = _tree(("all", "T", {"CD3": "pos"}))
    cells = _cells([[0, 0, v, 0, 0, 0] for v in (50.0, 400.0, 2500.0, 9000.0)])
    # a raw-scale gate (above log1p(9000) = 9.1; closest value 2500): no question asked
    assert phenotype(cells, {"CD3": 2000.0}, tree, inplace=False).tolist() == [UNKNOWN, UNKNOWN, "T", "T"]
    # a log1p-scale gate on raw values: refused by default, applied on log1p values with log=True
    with pytest.raises(ValueError, match=r"CD3 100.0 %; pass log=True"):
        phenotype(cells, {"CD3": 7.0}, tree)
    # log1p(400) = 5.99 < 7 < log1p(2500) = 7.82: the closest log value to 7 is log1p(2500)
    assert phenotype(cells, {"CD3": 7.0}, tree, log=True, inplace=False).tolist() == [
        UNKNOWN,
        UNKNOWN,
        "T",
        "T",
    ]
    # small values (max <= 100, e.g. IMC counts) are not second-guessed
    small = _cells([[0, 0, v, 0, 0, 0] for v in (1.0, 3.0, 20.0)])
    assert phenotype(small, {"CD3": 2.5}, tree, inplace=False).tolist() == [UNKNOWN, "T", "T"]


# ---------------------------------------------------------------- the gating rules, checked by hand

MARKERS = ["CD45", "ECAD", "CD3", "CD8", "CD4", "FOXP3"]


def _cells(rows: list[list[float]]) -> ad.AnnData:
    a = ad.AnnData(np.array(rows, dtype=np.float64), var=pd.DataFrame(index=MARKERS))
    a.obs_names = [f"c{i}" for i in range(len(rows))]
    return a


def _tree(*rows: tuple) -> pd.DataFrame:
    """Rows of (parent, phenotype, {marker: rule})."""
    return pd.DataFrame(
        [[p, name, *(rules.get(m) for m in MARKERS)] for p, name, rules in rows],
        columns=["Unnamed: 0", "Unnamed: 1", *MARKERS],
    )


def test_hierarchy_highest_score_rest_and_unknown():
    tree = _tree(
        ("all", "Immune", {"CD45": "pos"}),
        ("all", "Tumour", {"ECAD": "pos"}),
        ("Immune", "T cell", {"CD3": "pos"}),
        ("T cell", "CD8 T", {"CD8": "pos", "CD4": "neg"}),
        ("T cell-rest", "Tumour-like", {"ECAD": "pos"}),
    )
    cells = _cells(
        [
            [0.9, 0.6, 0.1, 0.1, 0.1, 0.1],  # both top rows positive: the higher score (CD45) wins
            [0.6, 0.9, 0.9, 0.9, 0.1, 0.1],  # Tumour: children of Immune never evaluated
            [0.2, 0.1, 0.1, 0.1, 0.1, 0.1],  # nothing at the first level
            [0.9, 0.1, 0.8, 0.1, 0.3, 0.1],  # T cell; CD8 T scores (0.1 + 0.7) / 2 < 0.5: stays T cell
            [0.9, 0.1, 0.8, 0.1, 0.1, 0.1],  # scores average: CD8- but CD4- gives (0.1 + 0.9) / 2 = 0.5
            [0.9, 0.1, 0.8, 0.9, 0.2, 0.1],  # CD8 T: (0.9 + (1 - 0.2)) / 2 = 0.85
            [0.9, 0.1, 0.2, 0.9, 0.1, 0.1],  # Immune, CD3-: Immune-rest -> keeps Immune
            [0.9, 0.7, 0.1, 0.1, 0.1, 0.1],  # Immune (0.9 > 0.7) then not a T cell
        ]
    )
    got = phenotype(cells, None, tree, inplace=False).tolist()
    assert got == ["Immune", "Tumour", UNKNOWN, "T cell", "CD8 T", "CD8 T", "Immune", "Immune"]


def test_rest_parent_takes_the_unmatched_cells():
    tree = _tree(
        ("all", "Immune", {"CD45": "pos"}),
        ("Immune", "T cell", {"CD3": "pos"}),
        ("Immune-rest", "Epithelial", {"ECAD": "pos"}),
    )
    # Immune-rest = Immune cells that are no T cell; cells outside Immune never reach it
    cells = _cells(
        [
            [0.9, 0.9, 0.1, 0, 0, 0],
            [0.9, 0.9, 0.9, 0, 0, 0],
            [0.9, 0.1, 0.1, 0, 0, 0],
            [0.1, 0.9, 0.1, 0, 0, 0],
        ]
    )
    got = phenotype(cells, None, tree, inplace=False).tolist()
    assert got == ["Epithelial", "T cell", "Immune", UNKNOWN]


def test_all_and_any_rules():
    tree = _tree(
        ("all", "DP", {"CD4": "allpos", "CD8": "allpos"}),
        ("all", "CD3 any", {"CD3": "anypos", "CD45": "anypos"}),
        ("all", "double negative", {"ECAD": "allneg", "FOXP3": "allneg"}),
    )
    cells = _cells(
        [
            [0.1, 0.9, 0.1, 0.6, 0.7, 0.9],  # allpos: max(0.7, 0.6) + 0.01
            [0.1, 0.9, 0.1, 0.9, 0.2, 0.9],  # one allpos marker fails -> 0.01; nothing else -> Unknown
            [0.8, 0.9, 0.1, 0.1, 0.1, 0.9],  # anypos takes the max: 0.8
            [0.1, 0.2, 0.1, 0.1, 0.1, 0.1],  # allneg: max(0.8, 0.9) + 0.01 = 0.91
            [0.1, 0.9, 0.6, 0.6, 0.6, 0.1],  # DP 0.61 vs CD3 any 0.6: the higher wins
        ]
    )
    got = phenotype(cells, None, tree, inplace=False).tolist()
    assert got == ["DP", UNKNOWN, "CD3 any", "double negative", "DP"]


def test_several_pos_markers_failing_one_gives_likely():
    tree = _tree(("all", "Treg", {"CD4": "pos", "FOXP3": "pos"}), ("all", "Other", {"CD45": "pos"}))
    # mean(0.9, 0.3) = 0.6 >= 0.5 wins over Other (0.55), but FOXP3 < 0.5
    cells = _cells([[0.55, 0, 0, 0, 0.9, 0.3], [0.55, 0, 0, 0, 0.9, 0.8]])
    assert phenotype(cells, None, tree, inplace=False).tolist() == ["likely-Treg", "Treg"]


def test_tie_goes_to_the_row_listed_first():
    tree = _tree(("all", "A", {"CD3": "pos"}), ("all", "B", {"CD8": "pos"}))
    cells = _cells([[0, 0, 0.7, 0.7, 0, 0]])
    assert phenotype(cells, None, tree, inplace=False).tolist() == ["A"]
    flipped = tree.iloc[::-1].reset_index(drop=True)
    assert phenotype(cells, None, flipped, inplace=False).tolist() == ["B"]


def test_gates_mapping_per_image_table_and_layer():
    tree = _tree(("all", "T", {"CD3": "pos"}))
    raw = np.zeros((4, len(MARKERS)))
    raw[:, 2] = [1.0, 5.0, 3.0, 9.0]
    cells = _cells(raw.tolist())
    cells.obs["image_id"] = ["a", "a", "b", "b"]
    cells.layers["counts"] = cells.X.copy()
    cells.X[:] = 0
    # rescaled per image: the threshold is the image's value closest to the gate (3 in image b)
    got = phenotype(cells, {"CD3": 4.5}, tree, layer="counts", inplace=False).tolist()
    assert got == [UNKNOWN, "T", "T", "T"]
    per_image = pd.DataFrame({"marker": ["CD3"], "a": [2.0], "b": [8.0]})
    assert phenotype(cells, per_image, tree, layer="counts", inplace=False).tolist() == [
        "T",
        "T",
        UNKNOWN,
        "T",
    ]
    phenotype(cells, {"CD3": 4.5}, tree, layer="counts", key_added="cd3")
    assert cells.obs["cd3"].tolist() == [UNKNOWN, "T", "T", "T"]


def test_rescale_maps_the_closest_value_to_one_half():
    v = np.array([3.0, 1.0, 11.0, 5.0, 7.0])
    np.testing.assert_allclose(rescale_to_gates(v, 5.4), [0.25, 0.0, 1.0, 0.5, 2 / 3])


# ---------------------------------------------------------------- bad input, one case per test


def test_markers_missing_from_var_names_are_listed():
    tree = _tree(("all", "T", {"CD3": "pos"})).assign(CD99="pos", CD7="neg")
    with pytest.raises(ValueError, match=r"not in adata.var_names: \['CD99', 'CD7'\]"):
        phenotype(_cells([[0] * 6]), None, tree)


def test_unknown_rule_values_are_listed():
    tree = _tree(("all", "T", {"CD3": "positive"}))
    with pytest.raises(ValueError, match=r"unknown rule values \['positive'\].*allowed: \['pos', 'neg'"):
        phenotype(_cells([[0] * 6]), None, tree)


def test_row_without_rule_is_refused():
    tree = _tree(("all", "T", {"CD3": "pos"}), ("all", "B", {}))
    with pytest.raises(ValueError, match=r"\['B'\]\) have no rule"):
        phenotype(_cells([[0] * 6]), None, tree)


def test_repeated_phenotype_is_refused():
    tree = _tree(("all", "T", {"CD3": "pos"}), ("all", "T", {"CD8": "pos"}))
    with pytest.raises(ValueError, match="listed twice"):
        phenotype(_cells([[0] * 6]), None, tree)


def test_workflow_with_too_few_columns_is_refused():
    with pytest.raises(ValueError, match="needs a parent column"):
        phenotype(_cells([[0] * 6]), None, pd.DataFrame({"a": ["all"], "b": ["T"]}))


def test_missing_workflow_file_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="phenotype workflow not found"):
        phenotype(_cells([[0] * 6]), None, tmp_path / "missing.csv")


def test_marker_without_gate_is_refused():
    tree = _tree(("all", "T", {"CD3": "pos", "CD8": "pos"}))
    with pytest.raises(ValueError, match=r"no gate for workflow markers \['CD8'\]"):
        phenotype(_cells([[0, 0, 1, 2, 0, 0]]), {"CD3": 0.5}, tree)


def test_per_image_gates_missing_an_image_are_refused():
    cells = _cells([[0, 0, 1, 0, 0, 0], [0, 0, 2, 0, 0, 0]])
    cells.obs["image_id"] = ["a", "b"]
    gates = pd.DataFrame({"marker": ["CD3"], "a": [1.0], "c": [1.0]})
    with pytest.raises(ValueError, match=r"no gates for images \['b'\]"):
        phenotype(cells, gates, _tree(("all", "T", {"CD3": "pos"})))


def test_nan_values_are_refused():
    with pytest.raises(ValueError, match=r"markers \['CD3'\] have NaN"):
        phenotype(_cells([[0, 0, np.nan, 0, 0, 0]]), None, _tree(("all", "T", {"CD3": "pos"})))


def test_gates_outside_the_data_range_warn():
    with pytest.warns(UserWarning, match=r"gates of \['CD3'\] lie outside"):
        phenotype(
            _cells([[0, 0, 1, 0, 0, 0], [0, 0, 2, 0, 0, 0]]),
            {"CD3": 7.5},
            _tree(("all", "T", {"CD3": "pos"})),
        )


def test_parent_never_assigned_warns():
    tree = _tree(("all", "T", {"CD3": "pos"}), ("B cell", "GC B", {"CD8": "pos"}))
    with pytest.warns(UserWarning, match="'B cell' is not a phenotype of an earlier row"):
        phenotype(_cells([[0, 0, 1, 0, 0, 0]]), None, tree)
