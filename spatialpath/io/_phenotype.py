"""Gating-tree phenotyping in the MCMICRO/scimap convention: manual gates and a hierarchical workflow."""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData

from spatialpath.io._common import check_path
from spatialpath.keys import Key

__all__ = ["RULES", "UNKNOWN", "phenotype", "rescale_to_gates"]

#: rule values of a workflow table (scimap's ``phenotype_workflow.csv``).
RULES = ("pos", "neg", "anypos", "anyneg", "allpos", "allneg")
#: label of cells that match no phenotype at the first level (scimap's label).
UNKNOWN = "Unknown"
#: rescaled values at or above this are positive: every gate maps to it.
GATE = 0.5
#: allpos/allneg scores get this edge over a matching single-marker phenotype (as in scimap).
_ALL_BONUS = 0.01
#: raw values above this, with every gate below log1p of the marker's maximum, mean that the
#: gates are on scimap's log1p scale while the values are raw intensities.
RAW_SCALE_MAX = 100.0

WorkflowLike = pd.DataFrame | str | os.PathLike[str]
GatesLike = Mapping[str, float] | pd.DataFrame | None


def _read_workflow(workflow: WorkflowLike, var_names: pd.Index) -> tuple[pd.DataFrame, list[str]]:
    """Return the workflow as (parent, phenotype, one rule column per marker) and the markers used."""
    if not isinstance(workflow, pd.DataFrame):
        workflow = pd.read_csv(check_path(workflow, what="phenotype workflow"), encoding="utf-8-sig")
    if workflow.shape[1] < 3:
        raise ValueError(
            "a phenotype workflow needs a parent column, a phenotype column and one column per marker "
            f"(scimap's phenotype_workflow.csv); got columns {workflow.columns.tolist()}"
        )
    wf = workflow.copy()
    wf.columns = ["parent", "phenotype", *(str(c).strip() for c in wf.columns[2:])]
    for col in ("parent", "phenotype"):
        if wf[col].isna().any():
            rows = wf.index[wf[col].isna()].tolist()
            raise ValueError(f"workflow rows {rows} have no {col} name")
        wf[col] = wf[col].astype(str).str.strip()
    markers = wf.columns[2:]
    rules = wf[markers].apply(lambda s: s.astype("string").str.strip().str.lower()).replace("", pd.NA)
    found = set(pd.unique(rules.to_numpy().ravel())) - {pd.NA}
    unknown = sorted(str(v) for v in found - set(RULES))
    if unknown:
        raise ValueError(f"unknown rule values {unknown} in the workflow; allowed: {list(RULES)} or empty")
    wf[markers] = rules.astype(object).where(rules.notna(), None)
    used = [m for m in markers if rules[m].notna().any()]
    missing = [m for m in used if m not in var_names]
    if missing:
        raise ValueError(
            f"workflow markers not in adata.var_names: {missing} (var_names: {var_names.tolist()[:40]})"
        )
    empty = wf.index[rules.isna().all(axis=1)].tolist()
    if empty:
        raise ValueError(f"workflow rows {empty} ({wf.loc[empty, 'phenotype'].tolist()}) have no rule")
    dup = wf.duplicated(["parent", "phenotype"])
    if dup.any():
        raise ValueError(
            f"phenotypes listed twice under the same parent: {wf.loc[dup, 'phenotype'].tolist()}"
        )
    return wf, used


def _gate_table(gates: Any, markers: list[str], images: list[str]) -> pd.DataFrame:
    """Gates as a (marker × image) table."""
    if isinstance(gates, Mapping):
        table = pd.DataFrame({img: pd.Series(gates, dtype=float) for img in images})
    elif isinstance(gates, pd.DataFrame):
        g = gates.set_index(gates.columns[0])
        g.index = g.index.astype(str).str.strip()
        g.columns = [str(c) for c in g.columns]
        if g.shape[1] == 1 and g.columns[0] not in images:  # one gate per marker, for every image
            g = pd.DataFrame(dict.fromkeys(images, g.iloc[:, 0]))
        lacking = [img for img in images if img not in g.columns]
        if lacking:
            raise ValueError(
                f"the gate table has columns {g.columns.tolist()} but no gates for images {lacking[:10]}; "
                "give one gate column per image id, or a single gate column for all images"
            )
        table = g[images].astype(float)
    else:
        raise TypeError(
            f"gates must be None, a mapping marker -> gate or a DataFrame, got {type(gates).__name__}"
        )
    table = table.reindex(markers)
    no_gate = [m for m in markers if table.loc[m].isna().any()]
    if no_gate:
        raise ValueError(f"no gate for workflow markers {no_gate}; add them to the gates")
    return table


def rescale_to_gates(values: np.ndarray, gate: float) -> np.ndarray:
    """Rescale one marker to [0, 1] so that its gate maps to 0.5 (scimap's ``pp.rescale``).

    The data value closest to ``gate``, ``c``, maps to 0.5; values from the minimum to ``c`` map
    linearly onto [0, 0.5] and values from ``c`` to the maximum onto [0.5, 1]. A value is
    therefore positive (≥ 0.5) exactly when it is ≥ ``c``.

    Parameters
    ----------
    values
        One marker's intensities over all cells.
    gate
        The marker's positivity threshold, in the units of ``values``.

    Returns
    -------
    numpy.ndarray
        Rescaled values in [0, 1], same shape as ``values``.

    Examples
    --------
    >>> rescale_to_gates(np.array([0.0, 2.0, 4.0, 10.0]), gate=4.2)
    array([0.  , 0.25, 0.5 , 1.  ])
    """
    v = np.asarray(values, dtype=np.float64)
    out = np.empty_like(v)
    if v.size == 0:
        return out
    c = v[np.argmin(np.abs(v - gate))]
    lo, hi = v.min(), v.max()
    above = v >= c
    out[above] = 0.5 + 0.5 * (v[above] - c) / (hi - c) if hi > c else 0.5
    out[~above] = 0.5 * (v[~above] - lo) / (c - lo)  # c > lo whenever a value lies below c
    return out


def _log_scale_gates(x: np.ndarray, images: np.ndarray, table: pd.DataFrame, used: list[str]) -> str | None:
    """A description of the problem if the gates look log1p-scale while ``x`` holds raw values.

    True when some (marker, image) has raw values above :data:`RAW_SCALE_MAX` and, for every such
    pair, the gate is below ``log1p`` of the maximum (scimap's gates are log1p-scale: 6-9 for
    16-bit intensities). The message gives the share of cells each marker would call positive.
    """
    pairs, shares = 0, {}
    for img in table.columns:
        rows = images == img
        for j, m in enumerate(used):
            v = x[rows, j]
            if not v.size or v.max() <= RAW_SCALE_MAX:
                continue
            g = table.at[m, img]
            if not g < np.log1p(v.max()):
                return None
            pairs += 1
            c = v[np.argmin(np.abs(v - g))]
            shares[m] = [*shares.get(m, []), float((v >= c).mean())]
    if not pairs:
        return None
    pos = ", ".join(f"{m} {100 * np.mean(f):.1f} %" for m, f in list(shares.items())[:6])
    more = len(shares) - 6
    pos += f" and {more} more marker{'s' if more > 1 else ''}" if more > 0 else ""
    return (
        f"the gates look log1p-scale (all below log1p of the markers' maxima, values up to "
        f"{np.nanmax(x):.4g}); on the raw values they would call positive: {pos}"
    )


def _scores(v: pd.DataFrame, rules: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """One phenotype's score for every cell (scimap's ``phenotype_cells``) and its 'likely-' flag."""
    parts, fail = [], np.zeros(len(v), dtype=bool)
    markers = {r: rules.index[rules == r].tolist() for r in RULES}
    if markers["pos"]:
        x = v[markers["pos"]].to_numpy()
        parts.append(x.mean(axis=1))
        if x.shape[1] > 1:  # several 'pos' markers: a cell failing one is only 'likely-'
            fail |= (x < GATE).any(axis=1)
    if markers["neg"]:
        x = v[markers["neg"]].to_numpy()
        parts.append((1 - x).mean(axis=1))
        if x.shape[1] > 1:
            fail |= (x > GATE).any(axis=1)
    if markers["anypos"]:
        parts.append(v[markers["anypos"]].to_numpy().max(axis=1))
    if markers["anyneg"]:
        parts.append((1 - v[markers["anyneg"]].to_numpy()).max(axis=1))
    for rule, sign in (("allpos", False), ("allneg", True)):
        if markers[rule]:
            x = v[markers[rule]].to_numpy()
            x = 1 - x if sign else x
            parts.append(np.where((x < GATE).any(axis=1), 0.0, x.max(axis=1)) + _ALL_BONUS)
    return np.sum(parts, axis=0) / len(parts), fail


def _assign(v: pd.DataFrame, rows: pd.DataFrame, parent: str) -> np.ndarray:
    """Label the cells of one parent: the best-scoring child, or ``parent-rest`` if none scores ≥ 0.5."""
    names = rows["phenotype"].tolist()
    scores, fails = zip(*(_scores(v, r) for _, r in rows.iloc[:, 2:].iterrows()), strict=True)
    s = np.column_stack(scores)
    rest = (s < GATE).all(axis=1).astype(float)
    best = np.argmax(np.column_stack([s, rest]), axis=1)  # ties: the first listed phenotype wins
    labels = np.array([*names, f"{parent}-rest"], dtype=object)[best]
    for k, name in enumerate(names):
        likely = (best == k) & fails[k]
        labels[likely] = f"likely-{name}"
    return labels


def phenotype(
    adata: AnnData,
    gates: GatesLike,
    workflow: WorkflowLike,
    *,
    log: bool | None = None,
    layer: str | None = None,
    image_key: str = Key.obs.image_id,
    key_added: str = "phenotype",
    inplace: bool = True,
) -> pd.Series | None:
    """Phenotype cells with manual gates and a gating tree, exactly as scimap's ``tl.phenotype_cells``.

    **Gates.** Each marker is rescaled per image so that its gate maps to 0.5 (scimap's
    ``pp.rescale``, see :func:`rescale_to_gates`): the data value closest to the gate becomes
    0.5, the minimum 0 and the maximum 1. A cell is positive for a marker when its rescaled
    value is ≥ 0.5. With ``gates=None`` the values are taken as already rescaled (e.g. scimap's
    output).

    **Workflow.** A table with a parent column, a phenotype column and one column per marker
    holding a rule (scimap's ``phenotype_workflow.csv``). The rows of one parent are evaluated
    only on the cells labelled with that parent (the first parent, usually ``all``, on every
    cell; a parent ``X-rest`` takes the cells of parent ``X`` that matched none of its rows).
    Each row gets a score per cell, the average over the rule kinds it uses of:

    - ``pos``: mean of the markers' values; ``neg``: mean of 1 − value;
    - ``anypos``: max value; ``anyneg``: max of 1 − value;
    - ``allpos``: max value if every marker is positive, else 0, plus 0.01;
      ``allneg``: max of 1 − value if every marker is negative, else 0, plus 0.01.

    A cell takes the highest-scoring row (ties: the row listed first); if every score is < 0.5
    it matches nothing at that level and keeps its parent's label. A row with several ``pos``
    (or ``neg``) markers of which one fails labels its cells ``likely-<phenotype>``. Cells that
    match nothing at the first level are labelled ``"Unknown"``. The result is the deepest
    label reached.

    Parameters
    ----------
    adata
        Cells; values are read from ``X`` (or ``layers[layer]``), markers from ``var_names``.
    gates
        ``None`` (values already rescaled to 0.5 = gate), a mapping marker → gate, or a table
        like scimap's ``manual_gates.csv``: first column the markers, then a single gate
        column used for every image, or one column per image id (``obs[image_key]``).
    workflow
        The gating tree as a DataFrame or the path of its CSV file.
    log
        Apply ``log1p`` to the values before gating (``True``) or not (``False``). scimap's
        ``pp.rescale`` has ``log=True`` by default (``log1p`` of ``adata.raw.X`` before gating),
        and MCMICRO/scimap ``manual_gates.csv`` gates are on that scale: with raw intensities,
        pass ``log=True``. ``None`` (the default) means ``False`` unless the gates look
        log1p-scale while the values are raw — every gate below ``log1p`` of its marker's maximum
        and values above 100 (:data:`RAW_SCALE_MAX`) — which raises :class:`ValueError` asking
        for ``log=True`` (or ``log=False`` for gates that really are on the raw scale, e.g. small
        IMC counts). Without ``gates`` it is ignored unless ``True``.
    layer
        Read values from ``adata.layers[layer]`` instead of ``X``.
    image_key
        ``obs`` column of image ids; gates are rescaled per image (all cells are one image if
        the column is absent).
    key_added
        ``obs`` column to write.
    inplace
        Write ``obs[key_added]`` (categorical) and return None; otherwise return the labels.

    Returns
    -------
    With ``inplace=False``, a categorical Series of labels indexed by ``obs_names``.

    Raises
    ------
    ValueError
        If workflow markers are missing from ``var_names``, a rule value is unknown, a row has
        no rule or repeats a phenotype, a marker has no gate, the values have NaN, or (with
        ``log=None``) the gates look log1p-scale while the values are raw.

    Examples
    --------
    >>> import anndata as ad
    >>> X = np.array([[9.0, 1.0, 8.0], [9.0, 1.0, 1.0], [1.0, 9.0, 1.0], [1.0, 1.0, 1.0]])
    >>> cells = ad.AnnData(X, var=pd.DataFrame(index=["CD45", "ECAD", "CD3"]))
    >>> tree = pd.DataFrame(
    ...     [["all", "Immune", "pos", None, None], ["all", "Tumour", None, "pos", None],
    ...      ["Immune", "T cell", None, None, "pos"]],
    ...     columns=["parent", "phenotype", "CD45", "ECAD", "CD3"],
    ... )
    >>> phenotype(cells, {"CD45": 6, "ECAD": 6, "CD3": 6}, tree, inplace=False).tolist()
    ['T cell', 'Immune', 'Tumour', 'Unknown']

    Raw 16-bit intensities with scimap's log1p-scale gates need ``log=True``:

    >>> raw = ad.AnnData(np.expm1(X) + 0.0, var=cells.var)
    >>> phenotype(raw, {"CD45": 6, "ECAD": 6, "CD3": 6}, tree, log=True, inplace=False).tolist()
    ['T cell', 'Immune', 'Tumour', 'Unknown']
    >>> phenotype(raw, {"CD45": 6, "ECAD": 6, "CD3": 6}, tree, inplace=False)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: the gates look log1p-scale ... CD45 100.0 %, ECAD 100.0 %, CD3 100.0 %; pass log=True ...
    """
    wf, used = _read_workflow(workflow, adata.var_names)
    raw = adata.layers[layer] if layer is not None else adata.X
    cols = [adata.var_names.get_loc(m) for m in used]
    x = np.asarray(raw[:, cols].toarray() if hasattr(raw, "toarray") else raw[:, cols], dtype=np.float64)
    if np.isnan(x).any():
        bad = [m for m, col in zip(used, np.isnan(x).any(axis=0), strict=True) if col]
        raise ValueError(f"markers {bad} have NaN values; drop or fill those cells before phenotyping")
    if gates is not None:
        images = (
            adata.obs[image_key].astype(str).to_numpy()
            if image_key in adata.obs
            else np.full(adata.n_obs, "all", dtype=object)
        )
        table = _gate_table(gates, used, list(pd.unique(images)))
        problem = _log_scale_gates(x, images, table, used) if log is None else None
        if problem:
            raise ValueError(
                f"{problem}; pass log=True to gate log1p(values) as scimap's rescale does by default "
                "(MCMICRO/scimap manual_gates.csv are log1p-scale), or log=False if the gates really "
                "are on the scale of the raw values"
            )
    if log:
        x = np.log1p(x)
    if gates is not None:
        outside = set()
        for img in table.columns:
            rows = images == img
            for j, m in enumerate(used):
                g = table.at[m, img]
                if not x[rows, j].min() <= g <= x[rows, j].max():
                    outside.add(m)
                x[rows, j] = rescale_to_gates(x[rows, j], g)
        if outside:
            warnings.warn(
                f"gates of {sorted(outside)} lie outside the markers' range of values, so every cell is "
                "positive or every cell is negative; check the scale of the gates (log=True for "
                "scimap/MCMICRO log-scale gates)",
                UserWarning,
                stacklevel=2,
            )
    values = pd.DataFrame(x, columns=used)

    n = adata.n_obs
    parents = list(pd.unique(wf["parent"]))
    levels: list[np.ndarray] = []
    for i, parent in enumerate(parents):
        rows = wf[wf["parent"] == parent]
        if i == 0:
            members = np.ones(n, dtype=bool)
        else:
            members = np.zeros(n, dtype=bool)
            for col in levels:
                members |= col == parent
            known = set(wf.loc[wf["parent"].isin(parents[:i]), "phenotype"]) | {
                f"{p}-rest" for p in parents[:i]
            }
            if parent not in known:
                warnings.warn(
                    f"workflow parent {parent!r} is not a phenotype of an earlier row, so its rows "
                    f"{rows['phenotype'].tolist()} are never evaluated; list a parent's own row first",
                    UserWarning,
                    stacklevel=2,
                )
        col = np.full(n, None, dtype=object)
        if members.any():
            col[members] = _assign(values[members], rows, parent)
        levels.append(col)

    label = np.full(n, UNKNOWN, dtype=object)
    for col in levels:  # the deepest (last) level a cell was labelled at; 'X-rest' is no label
        named = (
            pd.notna(col)
            & ~pd.Series(col, dtype=object).astype(str).str.contains("-rest", regex=False).to_numpy()
        )
        label[named] = col[named]
    result = pd.Series(pd.Categorical(label), index=adata.obs_names, name=key_added)
    if inplace:
        adata.obs[key_added] = result
        return None
    return result
