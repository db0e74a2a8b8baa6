"""Load and check a pipeline config and its sample sheet, reporting every problem at once.

:func:`load_config` reads the YAML file with ruamel.yaml (which keeps the line and column of
every key and value), validates each section (:mod:`spatialpath.pipeline._config`), checks the
sample sheet row by row, and raises one :class:`ConfigError` listing every problem as
``file:line:col: message`` before any work starts. See ``docs/pipeline-config.md``.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import BaseModel, RootModel, ValidationError

from spatialpath.model import TECHNOLOGIES
from spatialpath.pipeline._config import (
    NEEDS_PIXEL_SIZE,
    NO_PIXEL_SIZE,
    SECTIONS,
    PipelineConfig,
    section_value,
)
from spatialpath.pipeline._config_base import DEFER, suggest

__all__ = ["REQUIRED_COLUMNS", "SHEET_COLUMNS", "ConfigError", "Problem", "load_config"]

#: sample-sheet columns every row must fill.
REQUIRED_COLUMNS = ("patient_id", "sample_id", "image_id", "path", "technology")
#: optional sample-sheet columns with a meaning; any other column is metadata (arm, timepoint...).
OPTIONAL_COLUMNS = ("pixel_size_um", "image_path", "mask_path", "regions_path", "image_column")
SHEET_COLUMNS = REQUIRED_COLUMNS + OPTIONAL_COLUMNS
#: columns holding paths (relative to the sample sheet's folder).
PATH_COLUMNS = ("path", "image_path", "mask_path", "regions_path")
#: ``obs`` columns the pipeline writes itself: not allowed as metadata column names.
RESERVED = ("cell_type", "compartment", "cell_id", "label", "cn")

Mark = tuple[int, int]  # 1-based line, column


@dataclass(frozen=True)
class Problem:
    """One problem: where it is (file, 1-based line and column; column None for CSV rows) and what."""

    file: str
    line: int
    column: int | None
    message: str

    def __str__(self) -> str:
        col = f"{self.column}:" if self.column is not None else ""
        return f"{self.file}:{self.line}:{col} {self.message}"


class ConfigError(ValueError):
    """Every problem of a config and its sample sheet; ``problems`` holds them as :class:`Problem`."""

    def __init__(self, problems: list[Problem]):
        self.problems = sorted(problems, key=lambda p: (p.file, p.line, p.column or 0, p.message))
        n = len(self.problems)
        head = f"{n} problem{'s' if n != 1 else ''} in the pipeline configuration; nothing was run:"
        super().__init__("\n".join([head, *(f"  {p}" for p in self.problems)]))


# --- YAML with marks ------------------------------------------------------------------------------


class _Yaml:
    """A YAML document as plain Python data, with the (line, column) of every key and value."""

    def __init__(self, root: Any):
        self.keys: dict[tuple, Mark] = {}
        self.values: dict[tuple, Mark] = {(): (1, 1)}
        self.data = self._plain(root, ())

    def _plain(self, node: Any, path: tuple) -> Any:
        from ruamel.yaml.comments import CommentedMap, CommentedSeq

        if isinstance(node, CommentedMap):
            out = {}
            for k in node:
                key = self._plain(k, path)
                self.keys[(*path, key)] = _mark(node.lc.key(k))
                self.values[(*path, key)] = _mark(node.lc.value(k))
                out[key] = self._plain(node[k], (*path, key))
            return out
        if isinstance(node, CommentedSeq):
            for i in range(len(node)):
                self.values[(*path, i)] = self.keys[(*path, i)] = _mark(node.lc.item(i))
            return [self._plain(v, (*path, i)) for i, v in enumerate(node)]
        if isinstance(node, bool):
            return bool(node)
        for kind in (int, float, str):  # ruamel's ScalarInt, ScalarFloat, ScalarString subclasses
            if isinstance(node, kind):
                return kind(node)
        return node

    def find(self, loc: tuple) -> tuple[tuple, bool]:
        """The deepest existing path along ``loc`` and whether all of ``loc`` exists.

        Elements that name no key (pydantic's union tags) are skipped; a name in a list of names
        matches its item.
        """
        node, path = self.data, ()
        for i, part in enumerate(loc):
            in_dict = isinstance(node, dict) and part in node
            if in_dict or (isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)):
                path, node = (*path, part), node[part]
            elif isinstance(node, list) and part in node:
                j = node.index(part)
                path, node = (*path, j), node[j]
            elif i == len(loc) - 1:
                return path, False
        return path, True

    def mark(self, loc: tuple, *, key: bool = False) -> Mark:
        path, _ = self.find(loc)
        return (self.keys if key else self.values).get(path) or self.keys.get(path) or (1, 1)


def _mark(lc: tuple[int, int]) -> Mark:
    return lc[0] + 1, lc[1] + 1


def _read_yaml(path: Path) -> _Yaml:
    from ruamel.yaml import YAML
    from ruamel.yaml.error import MarkedYAMLError

    try:
        with open(path, encoding="utf-8") as fh:
            root = YAML(typ="rt").load(fh)
    except MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        text = " ".join(str(x) for x in (e.context, e.problem) if x)
        raise ConfigError([Problem(str(path), line, col, f"invalid YAML: {text}")]) from None
    if not isinstance(root, dict):
        raise ConfigError(
            [Problem(str(path), 1, 1, "the config must be a mapping of keys (version, samples, ...)")]
        )
    return _Yaml(root)


# --- the config sections --------------------------------------------------------------------------


def _submodel(annotation: Any) -> type[BaseModel] | None:
    """The model class in a field's annotation (``X`` or ``X | None``), if any."""
    candidates = getattr(annotation, "__args__", None) or (annotation,)
    return next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)


def _model_at(loc: tuple) -> type[BaseModel] | None:
    """The model class whose keys are valid at ``loc`` (for "did you mean")."""
    model: Any = PipelineConfig
    for part in loc:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        model = _submodel(field.annotation) if field is not None else None
        if model is None:
            return None
    return model


def _pydantic_problems(err: ValidationError, doc: _Yaml, report: Callable[..., None]) -> None:
    merged: dict[tuple, list[str]] = {}
    for e in err.errors(include_url=False):
        loc = tuple(e["loc"])
        path, exists = doc.find(loc)
        name = ".".join(str(p) for p in path) or "the config"
        if e["type"] == "extra_forbidden":
            model = _model_at(path[:-1])
            allowed = list(model.model_fields) if model is not None else []
            hint = suggest(str(path[-1]), allowed) or f" (allowed: {', '.join(allowed)})"
            report(doc.mark(path, key=True), f"unknown key {path[-1]!r}{hint}")
        elif e["type"] == "missing" or not exists:
            where = f" in {name}" if path else ""
            report(doc.mark(path, key=True), f"missing required key {loc[-1]!r}{where}")
        else:
            merged.setdefault(path, []).append(
                f"{e['msg']} (got {e['input']!r})" if e["type"] != "value_error" else e["msg"]
            )
    for path, msgs in merged.items():
        report(doc.mark(path), f"{'.'.join(map(str, path))}: {' or '.join(dict.fromkeys(msgs))}")


def _salvage(model: Any, value: Any, bad: list[tuple], ctx: dict) -> tuple[Any, list[tuple[tuple, str]]]:
    """Validate what has no type error (down to nested sections) to run its cross-key rules too."""
    if not bad:
        try:
            obj = model.model_validate(value, context=ctx)
        except ValidationError:  # pragma: no cover - the errors were reported already
            return None, []
        return obj, obj.problems()
    found: list[tuple[tuple, str]] = []
    if isinstance(value, dict) and () not in bad and not issubclass(model, RootModel):
        for name, field in model.model_fields.items():
            sub = _submodel(field.annotation)
            if sub is not None and value.get(name) is not None:
                _, probs = _salvage(sub, value[name], [b[1:] for b in bad if b[:1] == (name,)], ctx)
                found += [((name, *loc), msg) for loc, msg in probs]
    return None, found


def _sections(
    doc: _Yaml, base: Path, report: Callable[..., None]
) -> tuple[PipelineConfig | None, dict[str, Any]]:
    """Validate the config; sections that validate are returned even when others fail."""
    ctx = {"base": str(base), DEFER: True}
    try:
        cfg = PipelineConfig.model_validate(doc.data, context=ctx)
        sections, found = {name: getattr(cfg, name) for name in SECTIONS}, cfg.problems()
    except ValidationError as err:
        _pydantic_problems(err, doc, report)
        cfg, bad = None, [tuple(e["loc"]) for e in err.errors()]
        sections, found = {}, []
        for name, model in SECTIONS.items():
            value = section_value(name, doc.data.get(name))
            obj, probs = _salvage(model, value, [b[1:] for b in bad if b[:1] == (name,)], ctx)
            sections |= {name: obj} if obj is not None else {}
            found += [((name, *loc), msg) for loc, msg in probs]
    for loc, msg in found:
        report(doc.mark(loc, key=not doc.find(loc)[1]), msg)
    return cfg, sections


# --- the sample sheet -----------------------------------------------------------------------------


def _read_csv(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Header and non-blank records with the line each starts on (header = line 1)."""
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        header = [h.strip() for h in next(reader, [])]
        rows, start = [], reader.line_num + 1
        for rec in reader:
            if any(f.strip() for f in rec):
                rows.append((start, [f.strip() for f in rec]))
            start = reader.line_num + 1
    return header, rows


@lru_cache(maxsize=8)
def _image_ids_in(path: str, column: str, mtime_ns: int) -> tuple[list[str], list[str] | None]:
    """Columns of a delimited table and the distinct values of ``column`` (None if absent); cached."""
    from spatialpath.io._cell_files import _sniff

    sep, _ = _sniff(Path(path))
    columns = [str(c) for c in pd.read_csv(path, sep=sep, nrows=0).columns]
    if column not in columns:
        return columns, None
    values = pd.read_csv(path, sep=sep, usecols=[column], dtype=str)[column]
    return columns, [str(v) for v in pd.unique(values.dropna())]


def _h5ad_image_ids(path: str, column: str) -> tuple[list[str], list[str] | None]:
    import anndata as ad

    obs = ad.read_h5ad(path, backed="r").obs
    cols = [str(c) for c in obs.columns]
    return cols, ([str(v) for v in pd.unique(obs[column].astype(str))] if column in obs else None)


def _check_sheet(
    sheet_path: Path, cfg_sections: dict[str, Any], report_row: Callable[[int, str], None]
) -> pd.DataFrame | None:
    header, rows = _read_csv(sheet_path)
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    for col in missing:
        report_row(
            1, f"missing required column {col!r}{suggest(col, [h for h in header if h not in SHEET_COLUMNS])}"
        )
    for col in sorted({h for h in header if header.count(h) > 1}):
        report_row(1, f"column {col!r} appears more than once")
    for col in [h for h in header if h in RESERVED or not h]:
        report_row(
            1,
            f"column name {col!r} is reserved for the pipeline's own columns; rename it"
            if col
            else "a column has no name",
        )
    if not rows:
        report_row(1, "the sample sheet has no rows")
    if missing or len(set(header)) < len(header) or not rows:
        return None
    good = []
    for line, rec in rows:
        if len(rec) != len(header):
            report_row(line, f"{len(rec)} fields, but the header has {len(header)}")
        else:
            good.append((line, rec))
    df = pd.DataFrame(
        [r for _, r in good], columns=header, index=pd.Index([ln for ln, _ in good], name="line")
    )
    df = df.where(df != "")
    base = sheet_path.parent
    comp = cfg_sections.get("compartments")
    needs = {"masks": "mask_path", "geojson": "regions_path"}.get(comp.source if comp else "cells")
    seen: dict[tuple[str, str], int] = {}
    owner: dict[str, dict[str, tuple[str, int]]] = {"image_id": {}, "sample_id": {}}
    shared: dict[str, int] = {}
    for line, row in df.iterrows():
        for col in REQUIRED_COLUMNS:
            if pd.isna(row[col]):
                report_row(line, f"empty {col}")
        tech = str(row["technology"]).strip().lower() if pd.notna(row["technology"]) else None
        if tech is not None and tech not in TECHNOLOGIES:
            report_row(
                line,
                f"unknown technology {row['technology']!r}{suggest(tech, TECHNOLOGIES)} "
                f"(known: {', '.join(TECHNOLOGIES)})",
            )
        df.loc[line, "technology"] = tech
        _check_pixel_size(row, tech, line, comp, report_row)
        for col in PATH_COLUMNS:
            if col in df.columns and pd.notna(row[col]):
                p = Path(os.path.abspath(base / Path(str(row[col])).expanduser()))
                df.loc[line, col] = str(p)
                if not p.exists():
                    report_row(line, f"{col} not found: {p}")
        if needs and (needs not in df.columns or pd.isna(row.get(needs))):
            report_row(line, f"compartments source {comp.source} needs {needs} on every row")
        key = (str(row["sample_id"]), str(row["image_id"]))
        if key in seen:
            report_row(
                line, f"sample {key[0]!r} image {key[1]!r} is listed twice (first on line {seen[key]})"
            )
        seen.setdefault(key, line)
        for col, parent in (("image_id", "sample_id"), ("sample_id", "patient_id")):
            first = owner[col].setdefault(str(row[col]), (str(row[parent]), line))
            if first[0] != str(row[parent]) and pd.notna(row[col]):
                report_row(
                    line,
                    f"{col} {row[col]!r} is under {parent} {row[parent]!r} here "
                    f"but {first[0]!r} on line {first[1]}",
                )
        has_col = "image_column" in df.columns and pd.notna(row.get("image_column"))
        if pd.notna(row["path"]) and not has_col:
            if str(df.loc[line, "path"]) in shared:
                report_row(
                    line,
                    f"path is also on line {shared[str(df.loc[line, 'path'])]}: "
                    "a file holding several images needs image_column",
                )
            shared.setdefault(str(df.loc[line, "path"]), line)
    if "image_column" in df.columns:
        _check_image_columns(df, report_row)
    if "pixel_size_um" in df.columns:
        df["pixel_size_um"] = pd.to_numeric(df["pixel_size_um"], errors="coerce")
    blinded = cfg_sections.get("blinding")
    for col in blinded.columns if blinded else []:
        if col not in df.columns or col in SHEET_COLUMNS:
            report_row(
                1,
                f"blinding column {col!r} is not a metadata column of the sample sheet"
                f"{suggest(col, list(df.columns))}",
            )
    return df


def _check_pixel_size(
    row: pd.Series, tech: str | None, line: int, comp: Any, report_row: Callable[[int, str], None]
) -> None:
    value = row.get("pixel_size_um", math.nan)
    if pd.isna(value):
        if tech in NEEDS_PIXEL_SIZE:
            report_row(line, f"technology {tech} needs pixel_size_um (µm per pixel of its cell table)")
        elif comp is not None and comp.source == "geojson" and comp.geojson_units == "px":
            report_row(line, "geojson_units: px needs pixel_size_um on every row")
        return
    try:
        ps = float(value)
    except ValueError:
        ps = math.nan
    if not math.isfinite(ps) or ps <= 0:
        report_row(line, f"pixel_size_um must be a positive number of µm per pixel, got {value!r}")
    elif tech in NO_PIXEL_SIZE:
        report_row(
            line,
            f"pixel_size_um is not used for technology {tech} "
            "(its reader takes the scale from its files); leave it empty",
        )


def _check_image_columns(df: pd.DataFrame, report_row: Callable[[int, str], None]) -> None:
    """Each image of a multi-image file must be in its image column (only that column is read)."""
    for line, row in df[df["image_column"].notna() & df["path"].notna()].iterrows():
        p, col = Path(row["path"]), str(row["image_column"])
        if not p.is_file():
            continue  # reported as not found
        if p.suffix in (".parquet", ".xlsx", ".zarr") or p.parent.name.startswith(
            ("intensities", "regionprops")
        ):
            report_row(line, f"image_column needs a delimited text table (CSV/TSV) or .h5ad, not {p.name}")
            continue
        try:
            if p.suffix == ".h5ad":
                columns, ids = _h5ad_image_ids(str(p), col)
            else:
                columns, ids = _image_ids_in(str(p), col, p.stat().st_mtime_ns)
        except Exception as err:  # unreadable or corrupt input: a problem of this row, not a crash
            report_row(line, f"cannot read {p.name} to check image_column: {type(err).__name__}: {err}")
            continue
        if ids is None:
            report_row(line, f"image_column {col!r} is not a column of {p.name}{suggest(col, columns)}")
        elif str(row["image_id"]) not in ids:
            shown = ", ".join(ids[:5]) + (" ..." if len(ids) > 5 else "")
            report_row(
                line,
                f"image_id {row['image_id']!r} is not in column {col!r} of {p.name}"
                f"{suggest(str(row['image_id']), ids)} ({len(ids)} images there: {shown})",
            )


# --- entry point ----------------------------------------------------------------------------------


def load_config(path: str | os.PathLike[str]) -> PipelineConfig:
    r"""Read and check a pipeline config (YAML) and its sample sheet; raise all problems at once.

    Parameters
    ----------
    path
        The YAML file. Relative paths in it are relative to its folder; those of the sample sheet
        to the sheet's folder.

    Returns
    -------
    :class:`~spatialpath.pipeline._config.PipelineConfig` with absolute paths and
    :attr:`~spatialpath.pipeline._config.PipelineConfig.sample_sheet` loaded.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ConfigError
        Listing every problem as ``file:line:col: message`` (misspelt keys with a suggestion,
        wrong types, missing files, duplicated or conflicting ids, unknown technologies or
        metrics, bad pixel sizes, image ids absent from their file...); ``err.problems`` holds them.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> (folder / "data").mkdir()
    >>> _ = (folder / "data" / "cells.csv").write_text("x,y,cellType\n1.0,2.0,T\n")
    >>> _ = (folder / "samples.csv").write_text(
    ...     "patient_id,sample_id,image_id,path,technology\nP1,S1,I1,data/cells.csv,vectra\n")
    >>> _ = (folder / "run.yaml").write_text("version: 1\nsamples: samples.csv\noutput: out\ngrpah: {}\n")
    >>> load_config(folder / "run.yaml")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    spatialpath.pipeline._validate.ConfigError: 1 problem in the pipeline configuration; nothing was run:
      .../run.yaml:4:1: unknown key 'grpah'; did you mean 'graph'?
    >>> _ = (folder / "run.yaml").write_text("version: 1\nsamples: samples.csv\noutput: out\n")
    >>> load_config(folder / "run.yaml").sample_sheet[["image_id", "technology"]]
          image_id technology
    line
    2           I1     vectra
    """
    path = Path(os.path.abspath(Path(path).expanduser()))
    if not path.is_file():
        raise FileNotFoundError(f"pipeline config not found: {path}")
    problems: list[Problem] = []

    def report(mark: tuple[int, int], message: str) -> None:
        problems.append(Problem(str(path), mark[0], mark[1], message))

    doc = _read_yaml(path)
    cfg, sections = _sections(doc, path.parent, report)
    samples = doc.data.get("samples")
    sheet = None
    if isinstance(samples, str) and samples:
        sheet_path = Path(os.path.abspath(path.parent / Path(samples).expanduser()))
        if not sheet_path.is_file():
            report(doc.mark(("samples",)), f"sample sheet not found: {sheet_path}")
        else:
            sheet = _check_sheet(
                sheet_path, sections, lambda ln, msg: problems.append(Problem(str(sheet_path), ln, None, msg))
            )
    if cfg is not None and sheet is not None:
        _check_output(cfg, sheet, doc, report)
    if problems:
        raise ConfigError(problems)
    assert cfg is not None
    assert sheet is not None
    cfg._config_path, cfg._sheet = path, sheet
    return cfg


def _check_output(cfg: PipelineConfig, sheet: pd.DataFrame, doc: _Yaml, report: Callable[..., None]) -> None:
    from spatialpath.provenance import check_output_path

    inputs = [p for col in PATH_COLUMNS if col in sheet.columns for p in sheet[col].dropna()]
    try:
        check_output_path(cfg.output, list(dict.fromkeys(inputs)))
    except ValueError as e:
        report(doc.mark(("output",)), str(e))
