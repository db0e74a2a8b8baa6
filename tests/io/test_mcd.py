"""read_mcd on the Bodenmiller IMC test data, checked against the instrument's .txt exports and panels."""

from __future__ import annotations

import re
import sys
import warnings
import xml.etree.ElementTree as ET

import numpy as np
import pandas as pd
import pytest

from spatialpath.io import ReaderError, read_mcd
from spatialpath.model import validate_image

pytestmark = pytest.mark.realdata

IMC = "bodenmiller_imc_testdata"
MOCKS = [f"20210305_NE_mockData{i}" for i in range(1, 6)]


def _mcd(shared, mock="20210305_NE_mockData2"):
    return shared(IMC, "raw", mock, f"{mock}.mcd")


def _txt_image(path):
    """(channels, image) from a CyTOF .txt export: columns X, Y and one column per channel."""
    df = pd.read_csv(path, sep="\t", float_precision="round_trip")
    channels = [c for c in df.columns if c.endswith("Di)")]
    img = np.full((len(channels), df["Y"].max() + 1, df["X"].max() + 1), np.nan)
    img[:, df["Y"], df["X"]] = df[channels].to_numpy().T
    return channels, img


@pytest.mark.parametrize("mock", MOCKS)
def test_every_acquisition_equals_its_txt_export(shared, mock):
    images = read_mcd(_mcd(shared, mock))
    txts = sorted(shared(IMC, "raw", mock).glob("*.txt"))
    assert len(images) == len(txts) == 3
    for (image_id, img), txt in zip(images.items(), txts, strict=True):
        validate_image(img)
        acq_id = int(re.search(r"_(\d+)\.txt$", txt.name).group(1))
        assert image_id == f"{mock}_{acq_id:03d}"
        assert img.attrs["acquisition_description"] in txt.name
        channels, ref = _txt_image(txt)
        assert not np.isnan(ref).any()  # the export covers every pixel
        assert img.shape == ref.shape
        assert img.dtype == np.float32
        # the export prints 3 decimals, rounding half up: the MCD's float32 values give exactly those
        np.testing.assert_array_equal(np.floor(img.values.astype(np.float64) * 1000 + 0.5) / 1000, ref)
        assert np.abs(img.values - ref).max() <= 0.0005 + 1e-6
        # label(metalDi) headers: the MCD labels and metals of each channel
        assert [
            f"{lab}({m}Di)" for lab, m in zip(img.label.values, img.metal.values, strict=True)
        ] == channels


def test_names_from_mcd_labels_or_panel(shared):
    steinbock_panel = pd.read_csv(shared(IMC, "steinbock", "panel.csv"))
    raw = read_mcd(_mcd(shared))["20210305_NE_mockData2_001"]
    assert raw.c.values.tolist() == [
        "107Ag",
        "Cytoker_651((3356))Pr141",
        "Laminin_681((851))Sm147",
        "YBX1_2987((3532))Eu153",
        "H3K27Ac_1977((2242))Yb172",
    ]
    assert raw.metal.values.tolist() == steinbock_panel["channel"].tolist()
    assert raw.attrs["channels_from"] == "MCD channel labels"
    named = read_mcd(_mcd(shared), panel=shared(IMC, "steinbock", "panel.csv"))["20210305_NE_mockData2_001"]
    assert named.c.values.tolist() == steinbock_panel.loc[steinbock_panel["keep"] == 1, "name"].tolist()
    np.testing.assert_array_equal(named.values, raw.values)
    pipeline_panel = pd.read_csv(shared(IMC, "panel.csv"))  # IMC segmentation pipeline: Metal Tag, Target
    targets = dict(zip(pipeline_panel["Metal Tag"], pipeline_panel["Target"], strict=True))
    other = read_mcd(_mcd(shared), panel=pipeline_panel, acquisitions=1)["20210305_NE_mockData2_001"]
    assert other.c.values.tolist() == [targets[m] for m in other.metal.values]
    dropped = steinbock_panel.assign(keep=(steinbock_panel["channel"] != "Ag107").astype(int))
    four = read_mcd(_mcd(shared), panel=dropped, acquisitions=1)["20210305_NE_mockData2_001"]
    assert four.c.values.tolist() == ["Cytokeratin 5", "Laminin", "YBX1", "H3K27Ac"]
    np.testing.assert_array_equal(four.values, raw.values[1:])


def test_pixel_size_is_the_ablation_spacing_in_the_mcd_xml(shared):
    path = _mcd(shared)
    raw = path.read_bytes()
    start = raw.rfind("<MCDSchema".encode("utf-16-le"))  # the XML metadata is UTF-16 at the end
    text = raw[start:].decode("utf-16-le")
    root = ET.fromstring(text[: text.index("</MCDSchema>") + len("</MCDSchema>")])
    acquisitions = root.findall("{*}Acquisition")
    assert [a.findtext("{*}AblationDistanceBetweenShotsX") for a in acquisitions] == ["1", "1", "1"]
    assert [a.findtext("{*}AblationDistanceBetweenShotsY") for a in acquisitions] == ["1", "1", "1"]
    images = read_mcd(path)
    steinbock = pd.read_csv(shared(IMC, "steinbock", "images.csv")).set_index("image")
    for image_id, img in images.items():
        assert img.attrs["pixel_size_um"] == 1.0
        assert "AblationDistanceBetweenShots" in img.attrs["pixel_size_from"]
        row = steinbock.loc[f"{image_id}.tiff"]  # steinbock: same ROI, same size in µm and pixels
        assert img.sizes["x"] == row["width_px"]
        assert img.sizes["y"] == row["height_px"]
        assert img.sizes["x"] * img.attrs["pixel_size_um"] == row["acquisition_width_um"]
    with pytest.warns(UserWarning, match=r"pixel_size_um=2 overrides the file's 1 µm/px"):
        assert read_mcd(path, acquisitions=1, pixel_size_um=2)["20210305_NE_mockData2_001"].x[1] == 2.0


def test_select_acquisitions_by_id_description_or_image_id(shared):
    path = _mcd(shared)
    assert list(read_mcd(path, acquisitions=[3, "ROI_001"])) == [
        "20210305_NE_mockData2_003",
        "20210305_NE_mockData2_001",
    ]
    assert list(read_mcd(path, acquisitions="20210305_NE_mockData2_002")) == ["20210305_NE_mockData2_002"]
    with pytest.raises(ValueError, match=r"acquisition 'ROI_009' is not in .*1 \(ROI_001\), 2 \(ROI_002\)"):
        read_mcd(path, acquisitions="ROI_009")


def test_missing_readimc_says_how_to_install(shared, monkeypatch):
    monkeypatch.setitem(sys.modules, "readimc", None)
    with pytest.raises(ImportError, match=r'pip install "spatialpath\[mcd\]"'):
        read_mcd(_mcd(shared))


def test_truncated_mcd_is_a_reader_error(shared, tmp_path):
    data = _mcd(shared).read_bytes()
    bad = tmp_path / "run.mcd"
    bad.write_bytes(data[: len(data) // 3])  # the XML metadata sits at the end of an MCD
    with pytest.raises(ReaderError, match=r"run.mcd: not a readable MCD file"):
        read_mcd(bad)
    bad.write_bytes(data[:112_169] + data[122_169:])  # metadata intact, 10 kB of ROI_001's pixel data cut
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # readimc casting garbage
        with pytest.raises(ReaderError, match=r"acquisition 1 \(ROI_001\) cannot be read"):
            read_mcd(bad)


def test_bad_panel_and_missing_file(shared, tmp_path):
    with pytest.raises(ReaderError, match=r"a panel needs columns 'channel' and 'name'"):
        read_mcd(_mcd(shared), panel=pd.DataFrame({"metal": ["Ag107"]}))
    with pytest.raises(FileNotFoundError, match="MCD file not found"):
        read_mcd(tmp_path / "missing.mcd")
