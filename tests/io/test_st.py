"""Xenium (files written in the 10x layout), CosMx and MERSCOPE (GiottoData real minis) readers."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.io
import scipy.sparse as sp
import tifffile
import xarray as xr
from matplotlib.path import Path as PolygonPath

from spatialpath.io import (
    COSMX_NSCLC_2022_PIXEL_SIZE_UM,
    cosmx_fov_image,
    merscope_image,
    read_cosmx,
    read_cosmx_transcripts,
    read_merscope,
    read_merscope_transcripts,
    read_pyramid,
    read_xenium,
    read_xenium_transcripts,
    xenium_image,
)
from spatialpath.io._common import ReaderError
from spatialpath.model import get_image_metadata, validate_cells, validate_image, validate_labels

# --- Xenium: no real output in ../shared/data, so the tests write the XOA layout --------------

XENIUM_PX = 0.2125  # experiment.xenium "pixel_size" of current instruments
FEATURES = [
    ("ENSG00000198851", "CD3E", "Gene Expression"),
    ("ENSG00000170421", "KRT8", "Gene Expression"),
    ("ENSG00000119888", "EPCAM", "Gene Expression"),
    ("NegControlProbe_00042", "NegControlProbe_00042", "Negative Control Probe"),
    ("BLANK_0006", "BLANK_0006", "Blank Codeword"),
]
HALF_UM = 4.0  # cells are 8 µm squares around their centroid


def points(v):
    """Vectorised (pointwise) xarray indexer."""
    return xr.DataArray(np.asarray(v), dims="point")


def write_10x_h5(path, X, barcodes, features):
    csc = sp.csc_matrix(X.T)  # features × barcodes, as 10x stores it
    with h5py.File(path, "w") as f:
        g = f.create_group("matrix")
        g["barcodes"] = np.array(barcodes, dtype="S")
        g["data"], g["indices"], g["indptr"] = csc.data.astype(np.int32), csc.indices, csc.indptr
        g["shape"] = np.array(csc.shape, dtype=np.int32)
        ft = g.create_group("features")
        ft["id"] = np.array([f[0] for f in features], dtype="S")
        ft["name"] = np.array([f[1] for f in features], dtype="S")
        ft["feature_type"] = np.array([f[2] for f in features], dtype="S")
        ft["genome"] = np.array(["GRCh38"] * len(features), dtype="S")


def write_xenium(folder, *, legacy=False, seed=0):
    """XOA >= 1.3 layout (string ids, Parquet, HDF5 matrix); ``legacy``: XOA 1.0 (int ids, csv.gz, MEX)."""
    rng = np.random.default_rng(seed)
    folder.mkdir()
    centroids = np.array([[12.0, 10.0], [30.5, 14.25], [47.0, 40.0], [20.0, 52.5], [55.5, 20.0]])
    ids = [str(i + 1) for i in range(5)] if legacy else [f"aaaa{c}bbb-1" for c in "abcde"]
    rows = []
    for cid, (cx, cy) in zip(ids, centroids, strict=True):
        n = int(rng.integers(20, 40))
        rows.append(
            pd.DataFrame(
                {
                    "cell_id": int(cid) if legacy else cid,
                    "feature_name": rng.choice([f[1] for f in FEATURES], n),
                    "x_location": cx + rng.uniform(-HALF_UM, HALF_UM, n),
                    "y_location": cy + rng.uniform(-HALF_UM, HALF_UM, n),
                    "z_location": rng.uniform(10, 20, n),
                    "qv": rng.uniform(5, 40, n),
                }
            )
        )
    outside = pd.DataFrame(
        {
            "cell_id": -1 if legacy else "UNASSIGNED",
            "feature_name": "KRT8",
            "x_location": rng.uniform(0, 4, 7),
            "y_location": rng.uniform(60, 63, 7),
            "z_location": 15.0,
            "qv": 30.0,
        }
    )
    tx = pd.concat([*rows, outside], ignore_index=True)
    tx.insert(0, "transcript_id", np.arange(len(tx), dtype=np.uint64) + 281474976710656)
    tx["overlaps_nucleus"] = rng.integers(0, 2, len(tx)).astype(np.uint8)
    if legacy:
        tx.to_csv(folder / "transcripts.csv.gz", index=False)
    else:
        tx.to_parquet(folder / "transcripts.parquet")
    # the counts matrix: transcripts with qv >= 20 per cell and feature (10x's rule)
    q = tx[(tx["qv"] >= 20) & (tx["cell_id"].astype(str).isin(ids))]
    names = [f[1] for f in FEATURES]
    X = pd.crosstab(q["cell_id"].astype(str), q["feature_name"]).reindex(
        index=ids, columns=names, fill_value=0
    )
    cells = pd.DataFrame(
        {
            "cell_id": [int(c) for c in ids] if legacy else ids,
            "x_centroid": centroids[:, 0],
            "y_centroid": centroids[:, 1],
            "transcript_counts": X.iloc[:, :3].sum(1).to_numpy(),
            "control_probe_counts": X.iloc[:, 3].to_numpy(),
            "cell_area": (2 * HALF_UM) ** 2,
            "nucleus_area": 20.0,
        }
    ).iloc[::-1]  # the cell table need not be in the matrix's order
    if legacy:
        cells.to_csv(folder / "cells.csv.gz", index=False)
        mex = folder / "cell_feature_matrix"
        mex.mkdir()
        scipy.io.mmwrite(mex / "matrix.mtx", sp.coo_matrix(X.to_numpy().T))
        pd.Series(ids).to_csv(mex / "barcodes.tsv.gz", index=False, header=False)
        pd.DataFrame(FEATURES).to_csv(mex / "features.tsv.gz", sep="\t", index=False, header=False)
    else:
        cells.to_parquet(folder / "cells.parquet")
        write_10x_h5(folder / "cell_feature_matrix.h5", X.to_numpy(), ids, FEATURES)
    exp = {"run_name": "test run", "region_name": "region_A", "pixel_size": XENIUM_PX, "num_cells": 5}
    (folder / "experiment.xenium").write_text(json.dumps({**exp, "analysis_sw_version": "xenium-2.0.0.10"}))
    # DAPI focus image (XOA >= 2 layout, 2 pyramid levels): a bright 3 x 3 px block at each centroid
    dapi = np.full((320, 300), 100, np.uint16)
    for cx, cy in centroids:
        r, c = round(cy / XENIUM_PX), round(cx / XENIUM_PX)
        dapi[r - 1 : r + 2, c - 1 : c + 2] = 5000
    (folder / "morphology_focus").mkdir()
    with tifffile.TiffWriter(folder / "morphology_focus" / "morphology_focus_0000.ome.tif", ome=True) as tw:
        meta = {
            "axes": "YX",
            "PhysicalSizeX": XENIUM_PX,
            "PhysicalSizeY": XENIUM_PX,
            "Channel": {"Name": "DAPI"},
        }
        tw.write(dapi, subifds=1, tile=(64, 64), metadata=meta)
        tw.write(dapi[::2, ::2], subfiletype=1, tile=(64, 64))
    return ids, centroids, X, tx


@pytest.mark.parametrize("legacy", [False, True])
def test_xenium_cells_counts_and_centroids(tmp_path, legacy):
    ids, centroids, X, _ = write_xenium(tmp_path / "out", legacy=legacy)
    a = read_xenium(tmp_path / "out")
    validate_cells(a, library_key="image_id")
    assert a.obs_names.tolist() == ids
    assert a.var_names.tolist() == [f[1] for f in FEATURES]
    assert a.var["feature_types"].tolist() == [f[2] for f in FEATURES]
    np.testing.assert_array_equal(a.X.toarray(), X.to_numpy())
    np.testing.assert_array_equal(a.obsm["spatial"], centroids)  # Xenium centroids are already µm
    np.testing.assert_array_equal(a.obs["control_probe_counts"], X.iloc[:, 3])
    meta = get_image_metadata(a, "region_A")
    assert (meta.technology, meta.pixel_size_um, meta.shape_px) == ("xenium", XENIUM_PX, (320, 300))
    assert meta.extra["analysis_sw_version"] == "xenium-2.0.0.10"


@pytest.mark.parametrize("legacy", [False, True])
def test_xenium_transcripts_lazy_in_um_and_inside_their_cells(tmp_path, legacy):
    ids, _centroids, X, tx = write_xenium(tmp_path / "out", legacy=legacy)
    lazy = read_xenium_transcripts(tmp_path / "out")
    assert hasattr(lazy, "npartitions")  # dask: nothing read yet
    got = lazy.compute()
    assert list(got.columns[:5]) == ["x_um", "y_um", "z_um", "gene", "cell_id"]
    np.testing.assert_array_equal(got["x_um"], tx["x_location"])
    np.testing.assert_array_equal(got["y_um"], tx["y_location"])
    np.testing.assert_array_equal(got["z_um"], tx["z_location"])
    assert got["gene"].tolist() == tx["feature_name"].tolist()
    assert int(got["cell_id"].isna().sum()) == 7  # UNASSIGNED / -1
    assert set(got["cell_id"].dropna()) == set(ids)
    # every assigned transcript lies in its cell's square, found through read_xenium's obs_names
    a = read_xenium(tmp_path / "out")
    inside = got.dropna(subset=["cell_id"])
    centre = pd.DataFrame(a.obsm["spatial"], index=a.obs_names).loc[inside["cell_id"]].to_numpy()
    assert (np.abs(inside[["x_um", "y_um"]].to_numpy() - centre) <= HALF_UM).all()
    # min_qv=20 keeps exactly the transcripts the counts matrix counts
    q20 = read_xenium_transcripts(tmp_path / "out", lazy=False, min_qv=20)
    assert int(q20["cell_id"].notna().sum()) == int(X.to_numpy().sum())


def test_xenium_morphology_image_is_in_the_cells_um_frame(tmp_path):
    _, centroids, _, _ = write_xenium(tmp_path / "out")
    for level, ps in ((0, XENIUM_PX), (1, 2 * XENIUM_PX)):
        img = xenium_image(tmp_path / "out", level=level)
        validate_image(img)
        assert img.c.values.tolist() == ["DAPI"]
        assert img.attrs["pixel_size_um"] == pytest.approx(ps)
        assert img.chunks is not None  # lazy (dask)
        dapi = img.sel(c="DAPI")
        at_cells = dapi.sel(x=points(centroids[:, 0]), y=points(centroids[:, 1]), method="nearest")
        assert (at_cells.values == 5000).all()
        shifted = dapi.sel(x=points(centroids[:, 0] + 3), y=points(centroids[:, 1]), method="nearest")
        assert (shifted.values == 100).all()


def test_xenium_missing_cell_table(tmp_path):
    write_xenium(tmp_path / "out")
    (tmp_path / "out" / "cells.parquet").unlink()
    with pytest.raises(FileNotFoundError, match=r"no cell table.*cells\.parquet or cells\.csv\.gz"):
        read_xenium(tmp_path / "out")


def test_xenium_matrix_cell_without_row_in_cell_table(tmp_path):
    write_xenium(tmp_path / "out")
    cells = pd.read_parquet(tmp_path / "out" / "cells.parquet")
    cells.iloc[1:].to_parquet(tmp_path / "out" / "cells.parquet")
    with pytest.raises(
        ReaderError, match=r"1 cells of cell_feature_matrix\.h5 have no row in cells\.parquet"
    ):
        read_xenium(tmp_path / "out")


def write_morphology_multifile(folder, planes, names, *, linked=True, levels=2):
    """XOA >= 2 ``morphology_focus/``: one pyramidal OME-TIFF per stain; ``linked``: each file's OME-XML
    describes every stain and links the other files by UUID (as 10x writes them), else one stain per file."""
    import uuid

    (folder / "morphology_focus").mkdir(parents=True, exist_ok=True)
    uuids = [f"urn:uuid:{uuid.uuid4()}" for _ in names]
    files = [f"morphology_focus_{i:04d}.ome.tif" for i in range(len(names))]
    h, w = planes[0].shape
    for i, (f, plane) in enumerate(zip(files, planes, strict=True)):
        idx = range(len(names)) if linked else [i]
        chans = "".join(
            f'<Channel ID="Channel:0:{j}" Name="{names[k]}" SamplesPerPixel="1"/>' for j, k in enumerate(idx)
        )
        tds = "".join(
            f'<TiffData FirstC="{j}" FirstT="0" FirstZ="0" IFD="0" PlaneCount="1">'
            f'<UUID FileName="{files[k]}">{uuids[k]}</UUID></TiffData>'
            for j, k in enumerate(idx)
        )
        xml = (
            '<?xml version="1.0" encoding="UTF-8"?>'
            f'<OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06" UUID="{uuids[i]}">'
            f'<Image ID="Image:0" Name="morphology"><Pixels DimensionOrder="XYCZT" ID="Pixels:0" '
            f'SizeC="{len(idx)}" SizeT="1" SizeX="{w}" SizeY="{h}" SizeZ="1" Type="uint16" '
            f'PhysicalSizeX="{XENIUM_PX}" PhysicalSizeY="{XENIUM_PX}">{chans}{tds}</Pixels></Image></OME>'
        )
        with tifffile.TiffWriter(folder / "morphology_focus" / f) as tw:
            tw.write(plane, description=xml, metadata=None, subifds=levels - 1, tile=(32, 32))
            for k in range(1, levels):
                tw.write(plane[:: 2**k, :: 2**k], subfiletype=1, tile=(32, 32), metadata=None)
    (folder / "experiment.xenium").write_text(json.dumps({"pixel_size": XENIUM_PX}))
    return [folder / "morphology_focus" / f for f in files]


STAINS = ["DAPI", "boundary", "interior_RNA", "interior_protein"]


def stain_planes(seed=0, shape=(96, 128)):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 60000, shape).astype(np.uint16) for _ in STAINS]


def test_xenium_multifile_morphology_opens_each_stain_once(tmp_path):
    planes = stain_planes()
    write_morphology_multifile(tmp_path / "out", planes, STAINS)
    for level in (0, 1):
        img = xenium_image(tmp_path / "out", level=level)  # was: "channel names must be unique" (16 channels)
        validate_image(img)
        assert img.c.values.tolist() == STAINS
        assert img.chunks is not None
        np.testing.assert_array_equal(img.values, np.stack([p[:: 2**level, :: 2**level] for p in planes]))


def test_xenium_single_stain_files_are_stacked_and_missing_links_left_out(tmp_path):
    planes = stain_planes(1)
    write_morphology_multifile(tmp_path / "solo", planes, STAINS, linked=False)
    img = xenium_image(tmp_path / "solo")
    assert img.c.values.tolist() == STAINS
    np.testing.assert_array_equal(img.values, np.stack(planes))
    files = write_morphology_multifile(tmp_path / "gap", planes, STAINS)
    files[2].unlink()  # a linked file is missing: tifffile would zero its plane
    with pytest.warns(UserWarning, match=r"channels \['interior_RNA'\] of the morphology image are missing"):
        img = xenium_image(tmp_path / "gap")
    assert img.c.values.tolist() == ["DAPI", "boundary", "interior_protein"]
    np.testing.assert_array_equal(img.values, np.stack([planes[0], planes[1], planes[3]]))


@pytest.mark.parametrize("n_stains", [1, 4])
def test_xenium_pyramid_levels_are_placed_as_read_pyramid_places_them(tmp_path, n_stains):
    planes = stain_planes(2)[:n_stains]
    files = write_morphology_multifile(tmp_path / "out", planes, STAINS[:n_stains], levels=3)
    pyramid = read_pyramid(files[0])
    for level in (0, 1, 2):
        img = xenium_image(tmp_path / "out", level=level)
        f = 2**level  # level-k pixel j covers level-0 pixels f*j ... f*j + f - 1: centre at their mean
        expected_x = (f * np.arange(img.sizes["x"]) + (f - 1) / 2) * XENIUM_PX
        expected_y = (f * np.arange(img.sizes["y"]) + (f - 1) / 2) * XENIUM_PX
        np.testing.assert_allclose(img.x.values, expected_x, rtol=0, atol=1e-12)  # level 1 x[0]: was 0.0
        np.testing.assert_allclose(img.y.values, expected_y, rtol=0, atol=1e-12)
        assert img.attrs["pixel_size_um"] == pytest.approx(f * XENIUM_PX)
        np.testing.assert_array_equal(img.x.values, pyramid[level].x.values)
        np.testing.assert_array_equal(img.y.values, pyramid[level].y.values)


def test_xenium_min_qv_without_a_qv_column_is_an_error(tmp_path):
    write_xenium(tmp_path / "out")
    tx = pd.read_parquet(tmp_path / "out" / "transcripts.parquet").drop(columns="qv")
    tx.to_parquet(tmp_path / "out" / "transcripts.parquet")
    for lazy in (True, False):
        with pytest.raises(
            ReaderError, match=r"min_qv=20 filters on .*'qv', but transcripts.parquet has none"
        ):
            read_xenium_transcripts(tmp_path / "out", lazy=lazy, min_qv=20)
    assert len(read_xenium_transcripts(tmp_path / "out", lazy=False)) == len(tx)


# --- CosMx: the real Lung12 mini (tx file, FOV positions, CellLabels, CellComposite) -----------


@pytest.fixture(scope="module")
def cosmx_dir(shared):
    return shared("giottodata_mini", "CosMx", "Raw")


@pytest.fixture(scope="module")
def cosmx_tx(cosmx_dir):
    return pd.read_csv(cosmx_dir / "Lung12_tx_file.csv")


@pytest.mark.realdata
def test_cosmx_cells_from_the_real_tx_file(cosmx_dir, cosmx_tx):
    ps = COSMX_NSCLC_2022_PIXEL_SIZE_UM
    a = read_cosmx(cosmx_dir, pixel_size_um=ps)
    validate_cells(a, library_key="image_id")
    in_cells = cosmx_tx[cosmx_tx["cell_ID"] != 0]
    ref = pd.crosstab(in_cells["fov"].astype(str) + "_" + in_cells["cell_ID"].astype(str), in_cells["target"])
    assert a.n_obs == len(ref) == 120  # 67 cells in FOV 2, 53 in FOV 3
    assert a.n_vars == cosmx_tx["target"].nunique() == 980
    got = pd.DataFrame(a.X.toarray(), index=a.obs_names, columns=a.var_names)
    pd.testing.assert_frame_equal(
        got.loc[ref.index, ref.columns], ref.astype(np.float32), check_names=False, check_index_type=False
    )
    assert (got.drop(columns=ref.columns).to_numpy() == 0).all()
    assert a.var.loc[a.var_names.str.startswith("NegPrb"), "feature_types"].eq("Negative Control Probe").all()
    assert (a.obs["centroid_from"] == "CellLabels").all()
    meta = get_image_metadata(a, "Lung12")
    assert meta.technology == "cosmx"
    assert meta.pixel_size_um == ps
    # each centroid (from the label mask) falls on its own cell's label
    hits = []
    for fov in (2, 3):
        lab = cosmx_fov_image(cosmx_dir, fov, pixel_size_um=ps)
        cells = a[a.obs["fov"] == fov]
        x, y = cells.obsm["spatial"].T
        got = lab.sel(x=points(x), y=points(y), method="nearest").values
        hits.append(got == cells.obs["cell_ID"].to_numpy())
    assert np.concatenate(hits).mean() >= 0.98  # measured 119 of 120 (one concave cell)


@pytest.mark.realdata
def test_cosmx_transcripts_real_values_lazy_and_eager(cosmx_dir, cosmx_tx):
    ps = COSMX_NSCLC_2022_PIXEL_SIZE_UM
    tx = read_cosmx_transcripts(cosmx_dir, pixel_size_um=ps, lazy=False)
    assert len(tx) == len(cosmx_tx) == 25_825
    np.testing.assert_allclose(tx["x_um"], cosmx_tx["x_global_px"] * 0.18)
    np.testing.assert_allclose(tx["y_um"], -cosmx_tx["y_global_px"] * 0.18)  # CosMx y points up
    assert tx["gene"].tolist() == cosmx_tx["target"].tolist()
    assert int(tx["cell_id"].isna().sum()) == int((cosmx_tx["cell_ID"] == 0).sum())
    first = cosmx_tx.index[cosmx_tx["cell_ID"] != 0][0]
    assert tx.loc[first, "cell_id"] == f"{cosmx_tx.loc[first, 'fov']}_{cosmx_tx.loc[first, 'cell_ID']}"
    lazy = read_cosmx_transcripts(cosmx_dir / "Lung12_tx_file.csv", pixel_size_um=ps)
    assert hasattr(lazy, "npartitions")
    pd.testing.assert_frame_equal(
        lazy.compute()[["x_um", "y_um", "cell_id"]], tx[["x_um", "y_um", "cell_id"]]
    )


@pytest.mark.realdata
@pytest.mark.parametrize("fov", [2, 3])
def test_cosmx_transcripts_fall_on_their_cells_label(cosmx_dir, fov):
    ps = COSMX_NSCLC_2022_PIXEL_SIZE_UM
    lab = cosmx_fov_image(cosmx_dir, fov, pixel_size_um=ps)
    validate_labels(lab)
    comp = cosmx_fov_image(cosmx_dir, fov, kind="composite", pixel_size_um=ps)
    validate_labels(lab, like=comp)  # composite and labels share the grid
    tx = read_cosmx_transcripts(cosmx_dir, pixel_size_um=ps, lazy=False)
    t = tx[(tx["fov"] == fov) & tx["cell_id"].notna()]
    (x0, x1), (y0, y1) = (lab.x.values[[0, -1]], lab.y.values[[0, -1]])
    t = t[t["x_um"].between(x0 - ps / 2, x1 + ps / 2) & t["y_um"].between(y0 - ps / 2, y1 + ps / 2)]
    assert len(t) > 5000

    def hit_rate(y):
        got = lab.sel(x=points(t["x_um"].to_numpy()), y=points(y), method="nearest").values
        return (got == t["cell_ID"].to_numpy()).mean()

    assert hit_rate(t["y_um"].to_numpy()) >= 0.999  # measured 0.99990 (FOV 2), 1.0 (FOV 3)
    assert hit_rate(y0 + y1 - t["y_um"].to_numpy()) < 0.1  # y not flipped: 0.066, 0.021


@pytest.mark.realdata
def test_cosmx_without_pixel_size_refuses_to_guess(cosmx_dir):
    with pytest.raises(
        ValueError, match=r"do not state their pixel size.*COSMX_NSCLC_2022_PIXEL_SIZE_UM \(0\.18"
    ):
        read_cosmx(cosmx_dir)


def test_cosmx_vendor_exprmat_layout_pixel_size_from_mm_columns(tmp_path):
    d = tmp_path / "flat"
    d.mkdir()
    (d / "Run7_exprMat_file.csv").write_text(
        "fov,cell_ID,CD3E,KRT8,NegPrb3\n1,0,9,9,9\n1,1,3,0,1\n1,2,0,5,0\n2,0,4,4,4\n2,1,1,1,0\n"
    )
    (d / "Run7_metadata_file.csv").write_text(
        "fov,cell_ID,Area,CenterX_local_px,CenterY_local_px,CenterX_global_px,CenterY_global_px\n"
        "2,1,700,50,60,4306,8376\n1,1,900,100,200,100,4456\n1,2,800,300,250,300,4506\n"
    )
    (d / "Run7_fov_positions_file.csv").write_text(
        "FOV,x_global_mm,y_global_mm,x_global_px,y_global_px\n1,0.0,0.5,0,4156.95\n2,0.5,1.0,4156.95,8313.9\n"
    )
    a = read_cosmx(d)
    ps = 0.5 * 1000 / 4156.95  # µm per pixel stated by the FOV positions file
    assert a.obs_names.tolist() == ["1_1", "1_2", "2_1"]  # cell_ID 0 rows (outside cells) dropped
    assert a.X.toarray().tolist() == [[3, 0, 1], [0, 5, 0], [1, 1, 0]]
    np.testing.assert_allclose(a.obsm["spatial"], np.array([[100, -4456], [300, -4506], [4306, -8376]]) * ps)
    assert a.var["feature_types"].tolist() == ["Gene Expression", "Gene Expression", "Negative Control Probe"]
    assert get_image_metadata(a, "Run7").pixel_size_um == pytest.approx(ps)
    assert a.obs.loc["1_2", "Area"] == 800


def test_cosmx_cells_from_tx_file_alone_centre_on_their_transcripts(tmp_path):
    (tmp_path / "S9_tx_file.csv").write_text(
        "fov,cell_ID,x_global_px,y_global_px,x_local_px,y_local_px,z,target,CellComp\n"
        "3,12,1000,2000,0,0,1,CD3E,Nuclear\n3,12,1010,2020,0,0,1,CD3E,Nuclear\n3,12,1020,2010,0,0,2,KRT8,Membrane\n"
        "3,2,500,600,0,0,1,KRT8,Nuclear\n3,0,700,700,0,0,1,EPCAM,None\n"
    )
    a = read_cosmx(tmp_path, pixel_size_um=0.12)
    assert a.obs_names.tolist() == ["3_2", "3_12"]  # by fov, then cell_ID
    assert a.var_names.tolist() == ["CD3E", "EPCAM", "KRT8"]  # every target, also those outside cells
    assert a.X.toarray().tolist() == [[0, 0, 1], [2, 0, 1]]
    np.testing.assert_allclose(a.obsm["spatial"], np.array([[500, -600], [1010, -2010]]) * 0.12)
    assert (a.obs["centroid_from"] == "transcripts").all()


def test_cosmx_folder_without_cells(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no CosMx cells.*exprMat_file.*tx_file"):
        read_cosmx(tmp_path, pixel_size_um=0.12)


def test_cosmx_parquet_tx_file_and_vendor_cell_names(tmp_path):
    """Newer AtoMx: *_tx_file.parquet with a `cell` column (c_<slide>_<fov>_<cell_ID>)."""
    tx = pd.DataFrame(
        {
            "fov": [3, 3, 3, 3, 3],
            "cell_ID": [12, 12, 12, 2, 0],
            "cell": ["c_1_3_12", "c_1_3_12", "c_1_3_12", "c_1_3_2", "c_1_3_0"],
            "x_global_px": [1000.0, 1010.0, 1020.0, 500.0, 700.0],
            "y_global_px": [2000.0, 2020.0, 2010.0, 600.0, 700.0],
            "z": [1, 1, 2, 1, 1],
            "target": ["CD3E", "CD3E", "KRT8", "KRT8", "EPCAM"],
        }
    )
    tx.to_parquet(tmp_path / "S9_tx_file.parquet")
    a = read_cosmx(tmp_path, pixel_size_um=0.12)  # was: "no CosMx cells" (only *_tx_file.csv* looked for)
    assert a.obs_names.tolist() == ["c_1_3_2", "c_1_3_12"]  # the vendor's names, by fov then cell_ID
    assert a.X.toarray().tolist() == [[0, 0, 1], [2, 0, 1]]
    np.testing.assert_allclose(a.obsm["spatial"], np.array([[500, -600], [1010, -2010]]) * 0.12)
    for lazy in (True, False):
        got = read_cosmx_transcripts(tmp_path, pixel_size_um=0.12, lazy=lazy)
        got = got.compute() if lazy else got
        assert got["cell_id"].tolist() == ["c_1_3_12"] * 3 + ["c_1_3_2", None]
        np.testing.assert_allclose(got["x_um"], tx["x_global_px"] * 0.12)
        np.testing.assert_allclose(got["y_um"], -tx["y_global_px"] * 0.12)
    assert set(got["cell_id"].dropna()) == set(a.obs_names)


def test_cosmx_two_slides_keep_apart_by_the_cell_column(tmp_path):
    """AtoMx exports of several slides: fov 1 / cell_ID 1 exists on both; `cell` tells them apart."""
    (tmp_path / "Study_exprMat_file.csv").write_text(
        "fov,cell_ID,cell,CD3E,KRT8\n1,1,c_1_1_1,3,0\n1,1,c_2_1_1,0,7\n1,2,c_2_1_2,1,1\n"
    )
    (tmp_path / "Study_metadata_file.csv").write_text(
        "fov,cell_ID,cell,Area,CenterX_global_px,CenterY_global_px\n"
        "1,2,c_2_1_2,300,50,60\n1,1,c_2_1_1,200,30,40\n1,1,c_1_1_1,100,10,20\n"
    )
    a = read_cosmx(tmp_path, pixel_size_um=0.5)
    assert a.obs_names.tolist() == ["c_1_1_1", "c_2_1_1", "c_2_1_2"]  # was: "1_1" twice, with mixed rows
    assert a.X.toarray().tolist() == [[3, 0], [0, 7], [1, 1]]
    assert a.obs["Area"].tolist() == [100, 200, 300]
    np.testing.assert_allclose(a.obsm["spatial"], np.array([[10, -20], [30, -40], [50, -60]]) * 0.5)
    # without the cell column the collision is refused, not silently merged
    (tmp_path / "Study_metadata_file.csv").write_text(
        "fov,cell_ID,Area,CenterX_global_px,CenterY_global_px\n1,2,300,50,60\n1,1,200,30,40\n1,1,100,10,20\n"
    )
    with pytest.raises(ReaderError, match=r"cells \['1_1'\] repeat"):
        read_cosmx(tmp_path, pixel_size_um=0.5)


def write_cosmx_fov(folder, *, flip, positions):
    """One 40 x 60 px FOV: labels of cells 5 and 9, their transcripts, and the FOV positions file."""
    folder.mkdir()
    labels = np.zeros((40, 60), np.int32)
    labels[5:15, 30:45] = 5  # rows 5-14, columns 30-44
    labels[25:35, 5:20] = 9
    (folder / "CellLabels").mkdir()
    tifffile.imwrite(folder / "CellLabels" / "CellLabels_F001.tif", labels)
    x_fov, y_fov = 2000.0, 5000.0
    rows = np.array([6, 10, 14, 26, 30, 34])
    cols = np.array([31, 37, 44, 6, 12, 19])
    local_y = (40 - rows) if flip else rows  # CosMx y up (row 0 at the top = local y H) or y down
    (folder / "S1_tx_file.csv").write_text(
        "fov,cell_ID,x_global_px,y_global_px,x_local_px,y_local_px,z,target,CellComp\n"
        + "".join(
            f"1,{labels[r, c]},{x_fov + c},{y_fov + ly},{c},{ly},1,G{i % 2},Nuclear\n"
            for i, (r, c, ly) in enumerate(zip(rows, cols, local_y, strict=True))
        )
    )
    (folder / "S1_fov_positions_file.csv").write_text(positions(x_fov, y_fov))
    return labels


@pytest.mark.parametrize("flip", [True, False])
def test_cosmx_flip_y_places_transcripts_on_their_labels(tmp_path, flip):
    """Data written with y up (flip=True, NanoString's ReadMe) or y down (some AtoMx versions)."""
    ps = 0.12

    def px(x, y):
        return f"fov,x_global_px,y_global_px\n1,{x},{y}\n"

    write_cosmx_fov(tmp_path / "fov", flip=flip, positions=px)
    raw = pd.read_csv(tmp_path / "fov" / "S1_tx_file.csv")

    def hit_rate(flip_y):
        tx = read_cosmx_transcripts(tmp_path / "fov", pixel_size_um=ps, lazy=False, flip_y=flip_y)
        np.testing.assert_allclose(tx["y_um"], (-1 if flip_y else 1) * raw["y_global_px"] * ps)
        lab = cosmx_fov_image(tmp_path / "fov", 1, pixel_size_um=ps, flip_y=flip_y)
        got = lab.sel(x=points(tx["x_um"]), y=points(tx["y_um"]), method="nearest").values
        return (got == tx["cell_ID"].to_numpy()).mean()

    assert hit_rate(flip) == 1.0
    assert hit_rate(not flip) == 0.0  # the other orientation mirrors the FOV: no transcript on its cell
    a = read_cosmx(tmp_path / "fov", pixel_size_um=ps, flip_y=flip)
    assert get_image_metadata(a, "S1").extra["y_um"].startswith("-" if flip else "+")
    default = read_cosmx(tmp_path / "fov", pixel_size_um=ps).obsm["spatial"]  # flip_y=None: y up
    np.testing.assert_array_equal(default[:, 1] <= 0, True)


def test_cosmx_fov_positions_in_mm_only(tmp_path):
    """Newer AtoMx FOV positions: Slide, FOV, X_mm, Y_mm (no pixel columns)."""
    ps = 0.120280945

    def mm(x, y):
        return f"Slide,FOV,X_mm,Y_mm,Z_mm\n1,1,{x * ps / 1000!r},{y * ps / 1000!r},0.1\n"

    labels = write_cosmx_fov(tmp_path / "fov", flip=True, positions=mm)
    lab = cosmx_fov_image(tmp_path / "fov", 1, pixel_size_um=ps)  # was: KeyError 'x_global_px'
    np.testing.assert_array_equal(lab.values, labels)
    # pixel (0, 0) at global (x_fov, y_fov + H) px, y negated
    assert float(lab.x[0]) == pytest.approx(2000.0 * ps, rel=1e-12)
    assert float(lab.y[0]) == pytest.approx(-(5000.0 + 40) * ps, rel=1e-12)
    tx = read_cosmx_transcripts(tmp_path / "fov", pixel_size_um=ps, lazy=False)
    got = lab.sel(x=points(tx["x_um"]), y=points(tx["y_um"]), method="nearest").values
    assert (got == tx["cell_ID"].to_numpy()).all()
    # X_mm next to x_global_px states the pixel size
    (tmp_path / "fov" / "S1_fov_positions_file.csv").write_text(
        f"FOV,X_mm,Y_mm,x_global_px,y_global_px\n1,{2000 * ps / 1000!r},{5000 * ps / 1000!r},2000,5000\n"
    )
    assert get_image_metadata(read_cosmx(tmp_path / "fov"), "S1").pixel_size_um == pytest.approx(ps)


# --- MERSCOPE: the real Vizgen mini (transcripts, z0 cell polygons) ------------------------------


@pytest.fixture(scope="module")
def vizgen_dir(shared):
    return shared("giottodata_mini", "Vizgen", "Raw")


@pytest.mark.realdata
def test_merscope_transcripts_real_values(vizgen_dir):
    f = vizgen_dir / "vizgen_transcripts.gz"
    raw = pd.read_csv(f)
    tx = read_merscope_transcripts(f, lazy=False)
    assert len(tx) == 80_343
    assert tx["gene"].nunique() == 559
    np.testing.assert_array_equal(tx["x_um"], raw["global_x"])  # MERSCOPE transcripts are µm already
    np.testing.assert_array_equal(tx["y_um"], raw["global_y"])
    assert tx["cell_id"].isna().all()  # this export has no cell_id column
    assert tx["global_z"].tolist() == raw["global_z"].tolist()
    lazy = read_merscope_transcripts(f)
    assert hasattr(lazy, "npartitions")
    pd.testing.assert_frame_equal(lazy.compute()[["x_um", "y_um"]], tx[["x_um", "y_um"]])


@pytest.fixture(scope="module")
def merscope_region(vizgen_dir, tmp_path_factory):
    """MERSCOPE region files written from the mini's real z0 polygons and transcripts.

    The mini lacks cell_by_gene.csv and cell_metadata.csv; they are rebuilt here the way the
    vendor does (transcripts counted inside each cell polygon), with the real 38-digit EntityIDs.
    Giotto stored the polygons with y negated; they are flipped back to MERSCOPE's frame.
    """
    out = tmp_path_factory.mktemp("region_0")
    tx = pd.read_csv(vizgen_dir / "vizgen_transcripts.gz")
    poly = pd.read_csv(vizgen_dir / "cell_boundaries" / "z0_polygons.gz", dtype={"poly_ID": str})
    poly["y"] = -poly["y"]
    z0 = tx[tx["global_z"] == 0]
    pts = z0[["global_x", "global_y"]].to_numpy()
    cell_id = np.full(len(tx), "-1", dtype=object)
    rows = []
    for entity, g in poly.groupby("poly_ID", sort=True):
        inside = PolygonPath(g[["x", "y"]].to_numpy()).contains_points(pts)
        cell_id[np.flatnonzero(tx["global_z"] == 0)[inside]] = entity
        x, y = g["x"].to_numpy(), g["y"].to_numpy()
        rows.append((entity, 0, 100.0, x.mean(), y.mean(), x.min(), x.max(), y.min(), y.max()))
    cols = ["EntityID", "fov", "volume", "center_x", "center_y", "min_x", "max_x", "min_y", "max_y"]
    meta = pd.DataFrame(rows, columns=cols).set_index("EntityID")
    meta.index.name = None
    meta.to_csv(out / "cell_metadata.csv")
    assigned = pd.DataFrame({"cell": cell_id, "gene": tx["gene"]})
    assigned = assigned[assigned["cell"] != "-1"]
    genes = sorted(tx["gene"].unique())
    by_gene = pd.crosstab(assigned["cell"], assigned["gene"]).reindex(
        index=meta.index, columns=genes, fill_value=0
    )
    by_gene.rename_axis("cell").to_csv(out / "cell_by_gene.csv")
    vendor = tx.assign(barcode_id=0, x=0.0, y=0.0, fov=0, transcript_id="t", cell_id=cell_id)
    vendor.to_csv(out / "detected_transcripts.csv")
    return out, meta, by_gene


@pytest.mark.realdata
def test_merscope_cells_keep_38_digit_ids_and_um_centres(merscope_region):
    out, meta, by_gene = merscope_region
    a = read_merscope(out)
    validate_cells(a, library_key="image_id")
    assert a.n_obs == 498
    assert a.n_vars == 559
    assert a.obs_names.tolist() == meta.index.tolist()  # 37- to 39-digit EntityIDs, unchanged
    np.testing.assert_array_equal(a.obsm["spatial"], meta[["center_x", "center_y"]].to_numpy())
    np.testing.assert_array_equal(a.X.toarray(), by_gene.to_numpy())
    assert int(a.X.sum()) == 15_232  # z0 transcripts inside z0 polygons
    assert a.var.loc[a.var_names.str.startswith("Blank-"), "feature_types"].eq("Blank Codeword").all()


@pytest.mark.realdata
def test_merscope_transcripts_lie_inside_their_cells_bounds(merscope_region):
    out, _, _ = merscope_region
    a = read_merscope(out)
    tx = read_merscope_transcripts(out).compute()
    inside = tx.dropna(subset=["cell_id"])
    assert len(inside) == 15_232
    b = a.obs.loc[inside["cell_id"], ["min_x", "max_x", "min_y", "max_y"]].to_numpy()
    x, y = inside["x_um"].to_numpy(), inside["y_um"].to_numpy()
    assert ((b[:, 0] <= x) & (x <= b[:, 1]) & (b[:, 2] <= y) & (y <= b[:, 3])).all()


def test_merscope_mosaic_placed_by_the_micron_to_pixel_transform(tmp_path):
    (tmp_path / "images").mkdir()
    m = np.array([[9.259259, 0, -59259.26], [0, 9.259259, -43518.52], [0, 0, 1]])  # 0.108 µm px
    np.savetxt(tmp_path / "images" / "micron_to_mosaic_pixel_transform.csv", m, delimiter=" ")
    mosaic = np.zeros((400, 500), np.uint16)
    x_um, y_um = 6420.0, 4720.0
    col, row = round(m[0, 0] * x_um + m[0, 2]), round(m[1, 1] * y_um + m[1, 2])
    mosaic[row, col] = 999
    tifffile.imwrite(tmp_path / "images" / "mosaic_DAPI_z0.tif", mosaic)
    img = merscope_image(tmp_path)
    validate_image(img)
    assert img.attrs["pixel_size_um"] == pytest.approx(0.108)
    assert int(img.sel(c="DAPI", x=x_um, y=y_um, method="nearest")) == 999


@pytest.mark.parametrize(
    "fmt",
    [
        "{a} {b} {c}\n",  # Vizgen's own layout
        "{a}\t{b}\t{c}\n",  # re-saved as tab-separated
        "  {a}   {b}  {c}  \r\n",  # repeated, leading and trailing spaces, CRLF
        "{a}, {b}, {c}\n",  # comma and space
    ],
    ids=["spaces", "tabs", "ragged", "comma"],
)
def test_merscope_transform_with_any_whitespace(tmp_path, fmt):
    (tmp_path / "images").mkdir()
    m = [[9.259259, 0.0, -59259.26], [0.0, 9.259259, -43518.52], [0.0, 0.0, 1.0]]
    text = "".join(fmt.format(a=repr(r[0]), b=repr(r[1]), c=repr(r[2])) for r in m)
    (tmp_path / "images" / "micron_to_mosaic_pixel_transform.csv").write_bytes(text.encode())
    tifffile.imwrite(tmp_path / "images" / "mosaic_DAPI_z0.tif", np.zeros((40, 50), np.uint16))
    img = merscope_image(tmp_path)  # tabs and ragged spaces were: ValueError from np.loadtxt
    assert img.attrs["pixel_size_um"] == pytest.approx(1 / 9.259259, rel=1e-12)
    assert float(img.x[0]) == pytest.approx(
        59259.26 / 9.259259, rel=1e-12
    )  # pixel (0, 0) at -M[0, 2] / M[0, 0]
    assert float(img.y[0]) == pytest.approx(43518.52 / 9.259259, rel=1e-12)


def test_merscope_missing_cell_metadata(tmp_path):
    (tmp_path / "cell_by_gene.csv").write_text("cell,Gfap\n1,2\n")
    with pytest.raises(FileNotFoundError, match=r"cell_metadata\.csv not found.*cell centres in µm"):
        read_merscope(tmp_path)
